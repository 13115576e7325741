"""Image inputs: every accepted source, and each refusal naming its limit."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import pytest
from PIL import Image

from rapid_agent import ImageInputError, ImagePolicy, load_images
from rapid_agent.images import from_data_url, to_data_url

SMALL = ImagePolicy(resize_min_pixels=1, resize_max_pixels=10**9)


def png_bytes(size=(32, 24), colour="green") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_every_source_kind_loads_to_rgb(tmp_path):
    data = png_bytes()
    path = tmp_path / "a.png"
    path.write_bytes(data)
    sources = [
        Image.new("L", (32, 24)),
        data,
        str(path),
        "data:image/png;base64," + base64.b64encode(data).decode(),
        base64.b64encode(png_bytes((200, 200))).decode(),
    ]
    images = load_images(sources, SMALL)
    assert [img.mode for img in images] == ["RGB"] * 5
    assert images[2].size == (32, 24)


def test_images_are_resized_into_the_paper_area_range():
    policy = ImagePolicy(resize_min_pixels=100 * 100, resize_max_pixels=200 * 200)
    small, big = load_images([Image.new("RGB", (50, 50)), Image.new("RGB", (800, 400))], policy)
    assert small.size == (100, 100)
    assert abs(big.width * big.height - 200 * 200) < 600 and abs(big.width / big.height - 2) < 0.02


def test_data_url_round_trip():
    image = Image.new("RGB", (8, 8), "red")
    assert from_data_url(to_data_url(image)).getpixel((0, 0)) == (255, 0, 0)


def test_paths_outside_the_allowed_root_are_refused(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside.png"
    root.mkdir()
    outside.write_bytes(png_bytes())
    (root / "ok.png").write_bytes(png_bytes())
    (root / "link.png").symlink_to(outside)
    policy = ImagePolicy(allowed_root=root)

    assert load_images(["ok.png"], policy)[0].mode == "RGB"
    assert load_images([str(root / "ok.png")], policy)[0].mode == "RGB"
    for escape in ["../outside.png", str(outside), "link.png"]:
        with pytest.raises(ImageInputError, match="outside the allowed image root"):
            load_images([escape], policy)


@pytest.mark.parametrize(
    ("source", "policy", "message"),
    [
        ("/no/such.png", ImagePolicy(), "image 0: no such image file"),
        (b"\x89PNG\r\n\x1a\n garbage", ImagePolicy(), "not a readable image"),
        (b"plain text, not an image", ImagePolicy(), "not a readable image"),
        (png_bytes((64, 64)), ImagePolicy(max_bytes=50), "limit is max_bytes=50"),
        (png_bytes((64, 64)), ImagePolicy(max_pixels=1000), "limit is max_pixels=1000"),
        ("a.png", ImagePolicy(allow_local_paths=False), "local file paths are not accepted"),
        ("http://example.com/a.png", ImagePolicy(), "image URLs are disabled"),
        ("http://127.0.0.1:9/a.png", ImagePolicy(allow_urls=True), "non-public address"),
        ("http://10.1.2.3/a.png", ImagePolicy(allow_urls=True), "non-public address"),
        ("http://169.254.169.254/latest", ImagePolicy(allow_urls=True), "non-public address"),
        (12345, ImagePolicy(), "expected a path, URL, base64 string, bytes or PIL image, got int"),
        ("", ImagePolicy(), "expected a path"),
    ],
    ids=[
        "missing", "corrupt-png", "not-image", "too-many-bytes", "too-many-pixels", "paths-disabled",
        "urls-disabled", "loopback-url", "private-url", "link-local-url", "wrong-type", "empty",
    ],
)
def test_refusals_name_the_problem(source, policy, message):
    with pytest.raises(ImageInputError, match=message):
        load_images([source], policy)


def png_header_claiming(width: int, height: int) -> bytes:
    """A few hundred bytes that declare a huge greyscale PNG (a decompression bomb's shape)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 10_000)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding():
    big = png_header_claiming(10_000, 7_000)
    assert len(big) < 1000
    with pytest.raises(ImageInputError, match="70000000 pixels; the limit is max_pixels=64000000"):
        load_images([big], ImagePolicy())
    bomb = png_header_claiming(30_000, 30_000)  # PIL's own guard fires even with our limit lifted
    with pytest.raises(ImageInputError, match=r"decompression bomb \(Image size \(900000000 pixels\)"):
        load_images([bomb], ImagePolicy(max_pixels=10**10))


def test_too_many_images_are_refused():
    with pytest.raises(ImageInputError, match="max_images=2"):
        load_images([png_bytes()] * 3, ImagePolicy(max_images=2))
