"""Property-style: random valid images in every format and mode load identically from every source form."""

from __future__ import annotations

import base64
import io
import random
from pathlib import Path

from PIL import Image

from rapid_agent import ImagePolicy, load_images

NO_RESIZE = ImagePolicy(resize_min_pixels=1)
MODES = {
    "PNG": ["RGB", "RGBA", "L", "LA", "P", "P+transparency", "P+alpha", "I;16", "1"],
    "JPEG": ["RGB", "L", "CMYK"],
    "GIF": ["P", "L", "P+transparency"],
    "WEBP": ["RGB", "RGBA"],
}
BYTES_PER_PIXEL = {"RGB": 3, "RGBA": 4, "L": 1, "LA": 2, "P": 1, "I;16": 2, "CMYK": 4}


def random_image(rng: random.Random) -> tuple[bytes, str, Image.Image | None]:
    """(encoded image, format, the exact pixels when the format is lossless RGB/L, else None)."""
    fmt = rng.choice(sorted(MODES))
    mode, _, extra = rng.choice(MODES[fmt]).partition("+")
    size = (rng.randint(1, 40), rng.randint(1, 40))
    if mode == "1":
        image = Image.frombytes("1", size, rng.randbytes((size[0] + 7) // 8 * size[1]))
    else:
        image = Image.frombytes(mode, size, rng.randbytes(BYTES_PER_PIXEL[mode] * size[0] * size[1]))
    save = {}
    if mode == "P":
        image.putpalette(rng.randbytes(768))
        if extra == "transparency":
            save["transparency"] = rng.randrange(256)
        elif extra == "alpha":
            save["transparency"] = rng.randbytes(256)
    if fmt == "WEBP":
        save["lossless"] = rng.random() < 0.5
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    exact = image.convert("RGB") if fmt == "PNG" and mode in ("RGB", "L", "1") else None
    return buffer.getvalue(), fmt, exact


def every_form(data: bytes, fmt: str, path: Path) -> dict[str, object]:
    path.write_bytes(data)
    raw = base64.b64encode(data).decode()
    return {
        "base64": raw,
        "data URL": f"data:image/{fmt.lower()};base64,{raw}",
        "bytes": data,
        "path str": str(path),
        "pathlib.Path": path,
        "PIL": Image.open(io.BytesIO(data)),
    }


def test_800_random_images_load_identically_from_every_form(tmp_path):
    rng = random.Random(20260914)
    slash_first = 0
    for i in range(800):
        data, fmt, exact = random_image(rng)
        forms = every_form(data, fmt, tmp_path / f"{i}.{fmt.lower()}")
        slash_first += forms["base64"].startswith("/")
        loaded = dict(zip(forms, load_images(list(forms.values()), NO_RESIZE), strict=True))
        reference = loaded["bytes"]
        assert reference.mode == "RGB", (i, fmt)
        for form, image in loaded.items():
            assert (image.size, image.tobytes()) == (reference.size, reference.tobytes()), (i, fmt, form)
        if exact is not None:
            assert reference.tobytes() == exact.tobytes(), (i, fmt)
    assert slash_first > 100  # JPEG's base64 starts "/9j/": each was once mistaken for a path
