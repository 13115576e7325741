"""Image limits: hostile headers are refused before any pixel is decoded, and the memory spent on the
largest images the limits let through stays proportional to `max_pixels`."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageFile, WebPImagePlugin

from rapid_agent import ImageInputError, ImagePolicy, load_images
from rapid_agent.images import check_data_url, check_images, to_data_url
from rapid_agent.testing import image_memory

UNLIMITED_SIDES = {"max_width": 10**9, "max_height": 10**9}


def png_claiming(width: int, height: int, colour_type: int = 0) -> bytes:
    """A few hundred bytes that declare a huge PNG (a decompression bomb's shape)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    idat = zlib.compress(b"\0" * 10_000)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def gif_claiming(width: int, height: int) -> bytes:
    screen = struct.pack("<HHBBB", width, height, 0, 0, 0)
    return b"GIF89a" + screen + b"," + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x08\x00;"


def bmp_claiming(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 0, 0, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + info


def jpeg_claiming(width: int, height: int) -> bytes:
    frame = struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    scan = struct.pack(">HB", 8, 1) + b"\x01\x00\x00\x3f\x00"
    return b"\xff\xd8\xff\xc0" + frame + b"\xff\xda" + scan + b"\xff\xd9"


@pytest.fixture
def decodes(monkeypatch) -> list[str]:
    """Records every pixel decode (`load`) PIL starts."""
    calls: list[str] = []
    for cls in (ImageFile.ImageFile, WebPImagePlugin.WebPImageFile):
        original = cls.load

        def spy(self, original=original):
            calls.append(type(self).__name__)
            return original(self)

        monkeypatch.setattr(cls, "load", spy)
    return calls


HOSTILE = {
    "png 39999999x1": (png_claiming(39_999_999, 1), {}, "39999999 px wide; the limit is max_width=32768"),
    "png rgb 64000000x1": (png_claiming(64_000_000, 1, 2), {}, "the limit is max_width=32768"),
    "png 1x39999999": (png_claiming(1, 39_999_999), {}, "39999999 px tall; the limit is max_height=32768"),
    "gif 65535x1": (gif_claiming(65_535, 1), {}, "the limit is max_width=32768"),
    "bmp 1x40000000": (bmp_claiming(1, 40_000_000), {}, "the limit is max_height=32768"),
    "jpeg 65500x1": (jpeg_claiming(65_500, 1), {}, "the limit is max_width=32768"),
    "png 39999999x1, sides lifted": (
        png_claiming(39_999_999, 1), UNLIMITED_SIDES, "aspect ratio 4e\\+07; the limit is max_aspect_ratio=200",
    ),
    "png rgb 64000000x1, sides lifted": (
        png_claiming(64_000_000, 1, 2), UNLIMITED_SIDES, "the limit is max_aspect_ratio=200",
    ),
    "png 10000x7000": (png_claiming(10_000, 7_000), {}, "70000000 pixels; the limit is max_pixels=64000000"),
}


@pytest.mark.parametrize(("data", "limits", "message"), HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_headers_are_refused_before_any_decode(data, limits, message, decodes):
    assert len(data) < 1000
    policy = ImagePolicy(**limits)
    b64 = base64.b64encode(data).decode()
    for source in (data, b64, "data:image/png;base64," + b64):
        with pytest.raises(ImageInputError, match=f"image 0: .*{message}"):
            load_images([source], policy)
        with pytest.raises(ImageInputError, match=message):  # the served guard's header check
            check_images([source], policy)
    with pytest.raises(ImageInputError, match=message):
        check_data_url("data:image/png;base64," + b64, policy)
    lazy = Image.open(io.BytesIO(data))  # a PIL image the caller opened but did not decode
    with pytest.raises(ImageInputError, match=message):
        load_images([lazy], policy)
    assert decodes == []


def test_pil_decompression_bomb_guard_still_applies_when_our_limits_are_lifted():
    bomb = png_claiming(30_000, 30_000)
    with pytest.raises(ImageInputError, match=r"decompression bomb \(Image size \(900000000 pixels\)"):
        load_images([bomb], ImagePolicy(max_pixels=10**10))


def image_of(size: tuple[int, int], mode: str = "RGB", fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("size", "limits", "message"),
    [
        ((400, 2), {}, None),
        ((402, 2), {}, "402x2 px has aspect ratio 201; the limit is max_aspect_ratio=200"),
        ((2, 402), {}, "aspect ratio 201; the limit is max_aspect_ratio=200"),
        ((30, 10), {"max_aspect_ratio": 3}, None),
        ((31, 10), {"max_aspect_ratio": 3}, "aspect ratio 3.1; the limit is max_aspect_ratio=3"),
        ((100, 40), {"max_width": 100}, None),
        ((101, 40), {"max_width": 100}, "101 px wide; the limit is max_width=100"),
        ((40, 101), {"max_height": 100}, "101 px tall; the limit is max_height=100"),
        ((50, 20), {"max_pixels": 1000}, None),
        ((50, 21), {"max_pixels": 1000}, "50x21 = 1050 pixels; the limit is max_pixels=1000"),
        ((0, 5), {}, "0x5 px has no pixels"),
    ],
)
def test_each_limit_is_inclusive_and_named(size, limits, message):
    policy = ImagePolicy(resize_min_pixels=1, **limits)
    sources = [Image.new("RGB", size)] + ([image_of(size)] if min(size) else [])  # PNG has no empty images
    if message is None:
        assert [image.size for image in load_images(sources, policy)] == [size, size]
        return
    for src in sources:
        with pytest.raises(ImageInputError, match=message):
            load_images([src], policy)


@pytest.mark.parametrize("size", [(200, 1), (1, 200), (3000, 15), (640, 480), (5000, 4000)])
def test_what_prepare_encodes_passes_the_point_of_use_check(size):
    """Upscaling stays within the width/height limits, so the graph's own data URLs always pass."""
    policy = ImagePolicy(max_width=2000, max_height=2000, max_pixels=25_000_000, max_bytes=10 * 2**20)
    if max(size) > 2000:
        policy = policy.model_copy(update={"max_width": 5000, "max_height": 5000})
    (loaded,) = load_images([Image.effect_noise(size, 64).convert("RGB")], policy)
    assert loaded.width <= policy.max_width and loaded.height <= policy.max_height
    assert loaded.width * loaded.height <= policy.resize_max_pixels * 1.01
    check_data_url(to_data_url(loaded), policy)


def test_check_data_url_accepts_what_the_graph_encodes_and_nothing_else():
    policy = ImagePolicy(max_bytes=1000, max_pixels=100 * 100, resize_max_pixels=64 * 64)
    check_data_url(to_data_url(Image.effect_noise((64, 64), 80).convert("RGB")), policy)  # > max_bytes, fits area
    jpeg = base64.b64encode(image_of((8, 8), fmt="JPEG")).decode()
    check_data_url(f"data:image/jpeg;base64,{jpeg}", policy)
    with pytest.raises(ImageInputError, match=r"accepted format \(PNG\)"):
        check_data_url(f"data:image/jpeg;base64,{jpeg}", ImagePolicy(formats=("PNG",)))
    too_many_pixels = base64.b64encode(png_claiming(101, 100)).decode()
    for url, message in [
        ("http://127.0.0.1:9/a.png", "expected a data:image/<type>;base64, URL"),
        (b"data:image/png;base64,", "expected a data:image/<type>;base64, URL"),
        ("data:text/plain;base64,aGk=", "expected a data:image/<type>;base64, URL"),
        (f"data:image/png;base64,{too_many_pixels}", "limit is max_pixels=10000"),
        ("data:image/png;base64,iVBOR w0KGgo=", "invalid base64"),
        ("data:image/png;base64," + "A" * 1_500_000, "limit is max_bytes=1064960"),  # 4 * 64 * 64 + 1 MiB
        ("data:image/png;base64,aGVsbG8=", "not a readable image in an accepted format"),
    ]:
        with pytest.raises(ImageInputError, match=rf"image_urls\[0\]: .*{message}"):
            check_data_url(url, policy, where="image_urls[0]")


MEMORY_LIMITS = {"max_pixels": 4_000_000, "max_width": 30_000, "max_height": 30_000, "resize_max_pixels": 1_000_000}
WORST_ALLOWED = {  # the largest images MEMORY_LIMITS let through, in the costliest modes
    "rgba-square.png": ((2000, 2000), "RGBA", "PNG"),
    "16bit-square.png": ((2000, 2000), "I;16", "PNG"),
    "rgba-aspect200.png": ((28_000, 140), "RGBA", "PNG"),
    "rgba-tall.tiff": ((140, 28_000), "RGBA", "TIFF"),
    "square.jpg": ((2000, 2000), "RGB", "JPEG"),
    "cmyk-square.jpg": ((2000, 2000), "CMYK", "JPEG"),
    "palette-square.gif": ((2000, 2000), "P", "GIF"),
    "rgba-square.webp": ((2000, 2000), "RGBA", "WEBP"),
    "upscaled.png": ((200, 1), "LA", "PNG"),
}


@pytest.mark.slow  # measures in a fresh process
@pytest.mark.skipif(not image_memory.SUPPORTED, reason="needs Linux /proc peak-RSS reset")
def test_peak_memory_of_the_worst_allowed_images_is_bounded_by_max_pixels(tmp_path):
    paths = []
    for name, (size, mode, fmt) in WORST_ALLOWED.items():
        paths.append(tmp_path / name)
        Image.new(mode, size).save(paths[-1], format=fmt, **({"transparency": 0} if mode == "P" else {}))
    peaks = image_memory.peak_rss_growth(paths, ImagePolicy(**MEMORY_LIMITS))
    bound = 32 * MEMORY_LIMITS["max_pixels"]  # measured: 8 bytes per pixel for RGBA PNG, 16 for WebP
    over = {Path(p).name: f"{peak / 2**20:.0f} MiB" for p, peak in peaks.items() if peak > bound}
    assert not over, f"peak RSS above {bound / 2**20:.0f} MiB: {over}"
    assert len(peaks) == len(WORST_ALLOWED) and max(peaks.values()) > MEMORY_LIMITS["max_pixels"]  # it measures
