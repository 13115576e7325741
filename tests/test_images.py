"""Image inputs: every accepted source, and each refusal naming its limit."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import pytest
from PIL import Image

from rapid_agent import ImageInputError, ImagePolicy, load_images
from rapid_agent.images import check_images, from_data_url, to_data_url

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
        path,
        "data:image/png;base64," + base64.b64encode(data).decode(),
        base64.b64encode(png_bytes((200, 200))).decode(),
    ]
    images = load_images(sources, SMALL)
    assert [img.mode for img in images] == ["RGB"] * 6
    assert images[2].size == images[3].size == (32, 24)


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


def test_too_many_images_are_refused():
    with pytest.raises(ImageInputError, match="max_images=2"):
        load_images([png_bytes()] * 3, ImagePolicy(max_images=2))


def encoded(image: Image.Image, fmt: str, **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def test_raw_base64_is_told_from_paths_by_its_format_signature(tmp_path):
    jpeg = encoded(Image.new("RGB", (40, 30), "red"), "JPEG")
    raw = base64.b64encode(jpeg).decode()
    assert raw.startswith("/9j/")  # looks like an absolute path
    gif = base64.b64encode(encoded(Image.new("P", (2, 2)), "GIF")).decode()
    assert len(gif) < 100
    wrapped = "\n".join(raw[i : i + 76] for i in range(0, len(raw), 76))  # MIME-style line breaks
    images = load_images([raw, gif, wrapped, "  " + raw + "\n"], SMALL)
    assert [img.size for img in images] == [(40, 30), (2, 2), (40, 30), (40, 30)]

    not_image = base64.b64encode(b"just some text, not an image at all" * 20).decode()  # > NAME_MAX
    with pytest.raises(ImageInputError, match="no such image file|cannot read") as excinfo:
        load_images([not_image], SMALL)
    assert "nor is it base64 of an image in an accepted format" in str(excinfo.value)
    ppm = base64.b64encode(encoded(Image.new("RGB", (4, 4)), "PPM")).decode()
    with pytest.raises(ImageInputError, match="nor is it base64 of an image"):
        load_images([ppm], SMALL)
    with pytest.raises(ImageInputError, match="local file paths are not accepted"):
        load_images([not_image], ImagePolicy(allow_local_paths=False))

    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "cat1").write_bytes(png_bytes())  # valid base64 text, but no image signature
    assert load_images(["imgs/cat1"], ImagePolicy(allowed_root=tmp_path))[0].mode == "RGB"


def test_data_urls_must_be_base64_images():
    data = base64.b64encode(png_bytes()).decode()
    assert load_images([f"data:image/png;base64,{data}", f"data:;base64,{data}"], SMALL)[1].size == (32, 24)
    for bad, message in [
        (f"data:image/png,{data}", "must read data:image/<type>;base64"),
        (f"data:text/plain;base64,{data}", "must read data:image/<type>;base64"),
        ("data:image/png;base64", "must read data:image/<type>;base64"),
        ("data:image/png;base64,iVBO-w0K", "invalid base64"),
        ("data:image/png;base64,iVBORw0KGgo", "invalid base64"),
    ]:
        with pytest.raises(ImageInputError, match=message):
            load_images([bad], SMALL)


def test_a_pathlib_path_is_a_path_under_the_same_rules(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "ok.png").write_bytes(png_bytes())
    (tmp_path / "outside.png").write_bytes(png_bytes())
    assert load_images([Path("ok.png"), root / "ok.png"], ImagePolicy(allowed_root=root, resize_min_pixels=1))[1].size == (32, 24)
    with pytest.raises(ImageInputError, match="outside the allowed image root"):
        load_images([Path("../outside.png")], ImagePolicy(allowed_root=root))
    with pytest.raises(ImageInputError, match="local file paths are not accepted"):
        load_images([root / "ok.png"], ImagePolicy(allow_local_paths=False))


@pytest.mark.parametrize("rooted", [False, True], ids=["no-root", "allowed-root"])
def test_bad_paths_are_refused_with_a_typed_error(tmp_path, rooted):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "dir.png").mkdir()
    os.mkfifo(tmp_path / "fifo.png")  # opening it must not wait for a writer
    policy = ImagePolicy(allowed_root=tmp_path if rooted else None, max_bytes=100)
    (tmp_path / "big.png").write_bytes(png_bytes((64, 64)))
    prefix = "" if rooted else f"{tmp_path}/"
    cases = {
        f"{prefix}loop": "symbolic link loop|Too many levels of symbolic links",
        f"{prefix}a\0b.png": "must not contain a NUL byte",
        f"{prefix}dir.png": "Is a directory",
        f"{prefix}fifo.png": "is not a regular file",
        f"{prefix}big.png": "limit is max_bytes=100",
        f"{prefix}{'x' * 300}.png": "File name too long",
    }
    for source, message in cases.items():
        for form in (source, Path(source)) if "\0" not in source else (source,):
            with pytest.raises(ImageInputError, match=message):
                load_images([form], policy)
            with pytest.raises(ImageInputError, match=message):
                check_images([form], policy)


def test_16_bit_greyscale_is_scaled_not_clipped():
    values = [[(x * 256 + y) * 4 % 65536 for x in range(64)] for y in range(64)]
    image = Image.new("I;16", (64, 64))
    image.putdata([v for row in values for v in row])
    for fmt in ("PNG", "TIFF"):
        (loaded,) = load_images([encoded(image, fmt)], SMALL)
        got = loaded.load()
        assert all(got[x, y] == (round(values[y][x] / 257),) * 3 for x in range(64) for y in range(64)), fmt
    big_endian = Image.new("I;16B", (2, 1))
    big_endian.putdata([0, 65535])
    assert pixels(load_images([big_endian], SMALL)[0]) == [(0, 0, 0), (255, 255, 255)]


def pixels(image: Image.Image) -> list:
    return [image.getpixel((x, y)) for y in range(image.height) for x in range(image.width)]


def rgba_sample() -> Image.Image:
    """Opaque blue, fully transparent black, half-transparent red (straight alpha)."""
    image = Image.new("RGBA", (3, 1))
    image.putdata([(0, 0, 255, 255), (0, 0, 0, 0), (255, 0, 0, 128)])
    return image


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_rgba_is_composited_on_white(fmt):
    data = encoded(rgba_sample(), fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    for source in (data, rgba_sample().convert("RGBa")):  # straight and premultiplied alpha
        (loaded,) = load_images([source], SMALL)
        assert pixels(loaded) == [(0, 0, 255), (255, 255, 255), (255, 127, 127)]


def test_every_kind_of_transparency_is_composited_on_white():
    la = Image.new("LA", (2, 1))
    la.putdata([(10, 255), (0, 0)])
    palette = Image.new("P", (2, 1))
    palette.putpalette([10, 20, 30, 0, 0, 0])
    palette.putdata([0, 1])
    pa = Image.new("PA", (2, 1))
    pa.putpalette([10, 20, 30, 0, 0, 0])
    pa.putdata([(0, 255), (1, 0)])
    sources = {
        "LA png": encoded(la, "PNG"),
        "La": la.convert("La"),
        "PA": pa,
        "P + transparent index (GIF)": encoded(palette, "GIF", transparency=1),
        "P + transparent index (PNG)": encoded(palette, "PNG", transparency=1),
        "P + palette alpha (PNG)": encoded(palette, "PNG", transparency=bytes([255, 0])),
        "RGB + tRNS colour (PNG)": encoded(palette.convert("RGB"), "PNG", transparency=(0, 0, 0)),
    }
    for name, source in sources.items():
        (loaded,) = load_images([source], SMALL)
        first, second = pixels(loaded)[:2]
        assert second == (255, 255, 255), name
        assert first in {(10, 10, 10), (10, 20, 30)}, name


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animated_images_give_their_first_frame(fmt):
    frames = [Image.new("RGB", (8, 8), colour) for colour in ("red", "blue", "green")]
    data = encoded(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0,
                   **({"lossless": True} if fmt == "WEBP" else {}))
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    (loaded,) = load_images([data], SMALL)
    assert loaded.getpixel((4, 4)) == (255, 0, 0)


def test_truncated_and_corrupt_images_are_typed(tmp_path):
    data = encoded(Image.effect_noise((64, 64), 50).convert("RGB"), "PNG")
    truncated = data[: len(data) // 2]
    (tmp_path / "cut.png").write_bytes(truncated)
    lazy = Image.open(tmp_path / "cut.png")  # opened lazily: the error comes at load time
    for source in [truncated, lazy, str(tmp_path / "cut.png"), encoded(Image.new("RGB", (8, 8)), "JPEG")[:200]]:
        with pytest.raises(ImageInputError, match="image 0: not a readable image"):
            load_images([source], SMALL)
