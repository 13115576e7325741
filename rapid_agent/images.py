"""Image inputs → RGB `PIL.Image`, under explicit limits and an allowed-root policy.

A source's kind is told by its Python type and prefix alone, never by what exists on disk:

- `PIL.Image.Image`: used as it is (its current frame);
- `bytes` / `bytearray` / `memoryview`: an encoded image file;
- `pathlib.Path` (any `os.PathLike`): a local file (under `ImagePolicy.allowed_root` when set);
- a `str` starting with `data:`: a base64 data URL (`data:image/png;base64,...`);
- a `str` starting with `http://` or `https://`: a URL, fetched only when `ImagePolicy.allow_urls`
  (loopback, link-local and private addresses are refused);
- any other `str`: raw base64 (whitespace allowed) when it is valid base64 whose first bytes carry the
  signature of an accepted format, otherwise a local file path (pass a `Path` to force a path).

Limits are checked from the image header before any pixel is decoded, so the memory and time spent on
one image are bounded by `max_pixels`: the peak is about 8 bytes per pixel for RGBA PNG or TIFF, 2 for
a JPEG that is downscaled (decoded at a reduced scale), 16 for WebP (libwebp's own frame buffers).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import ipaddress
import os
import re
import socket
import stat
import urllib.request
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlparse

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from rapid_agent.errors import ImageInputError

ImageInput = str | bytes | Path | Image.Image

MIB = 1024 * 1024

_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_IMAGE_DATA_URL = re.compile(r"data:image/[A-Za-z0-9.+-]+;base64,")
_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


class ImagePolicy(BaseModel):
    """Where images may come from, how big they may be, and how they are normalised.

    Defaults suit local, trusted use. Width, height, aspect ratio and pixel count are read from the
    header and checked before decoding. Every image becomes 8-bit RGB as a viewer would show it:
    transparency (RGBA, LA, PA, a transparent palette colour) is composited on white, 16-bit samples
    are scaled to 8 bits (v * 255 / 65535), and an animated image (GIF, APNG, WebP) gives its first frame.
    Then it is resized, keeping its aspect ratio, into [`resize_min_pixels`, `resize_max_pixels`].
    """

    model_config = ConfigDict(frozen=True)

    allowed_root: Path | None = Field(None, description="Local paths must resolve inside this folder.")
    allow_local_paths: bool = True
    allow_urls: bool = False
    max_bytes: int = Field(32 * MIB, gt=0, description="Largest encoded image accepted.")
    max_pixels: int = Field(64_000_000, gt=0, description="Largest width*height (bomb guard).")
    max_width: int = Field(32_768, gt=0, description="Widest image accepted, in pixels.")
    max_height: int = Field(32_768, gt=0, description="Tallest image accepted, in pixels.")
    max_aspect_ratio: float = Field(
        200.0, ge=1, description="Largest long side / short side (Qwen2.5-VL's processor refuses more than 200)."
    )
    max_images: int = Field(8, gt=0, description="Most images per request (the paper uses up to 8).")
    url_timeout_s: float = Field(10.0, gt=0)
    formats: tuple[str, ...] = Field(
        ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"),
        description="PIL formats accepted (others, e.g. EPS, which runs Ghostscript, are refused).",
    )
    resize_min_pixels: int = Field(512 * 512, gt=0, description="Upscale smaller images to this area.")
    resize_max_pixels: int = Field(2048 * 2048, gt=0, description="Downscale larger images to this area.")


def load_images(sources: Sequence[ImageInput], policy: ImagePolicy) -> list[Image.Image]:
    """Load and check every image of a request; raises `ImageInputError` naming the bad one."""
    return [_load_one(src, f"image {i}", policy) for i, src in enumerate(_counted(sources, policy))]


def check_images(sources: Sequence[ImageInput], policy: ImagePolicy) -> None:
    """Check a request's images as `load_images` would, from their headers only (request-time validation).

    Checks each source's kind, byte size, format, width, height, aspect ratio and pixel count without
    decoding pixels (a corrupt body is found later, by `load_images`). URLs are checked against the
    policy and their host's addresses, but not fetched.
    """
    for i, src in enumerate(_counted(sources, policy)):
        where = f"image {i}"
        if isinstance(src, str) and src.strip().startswith(("http://", "https://")):
            _check_url(src.strip(), where, policy)
            continue
        encoded = _encoded(src, where, policy)
        with _readable(where, policy):
            if isinstance(encoded, Image.Image):
                _check_size(encoded.size, where, policy)
            else:
                _open(encoded, where, policy)


def check_data_url(url: str, policy: ImagePolicy, where: str = "image") -> None:
    """Check that `url` is a `data:image/<type>;base64,` URL of an accepted format within `policy`'s limits.

    For re-checking, at the point of use, the image URLs a model will receive: an http(s) URL, malformed
    base64, a format outside `policy.formats` or an image over the size limits raises `ImageInputError`.
    Header only (the base64 is decoded, the pixels are not). The byte limit is `max_bytes`, or what a
    lossless RGB encoding of a `resize_max_pixels` image may need, whichever is larger.
    """
    match = _IMAGE_DATA_URL.match(url) if isinstance(url, str) else None
    if match is None:
        raise ImageInputError(f"{where}: expected a data:image/<type>;base64, URL, got {url!r:.60}")
    max_bytes = max(policy.max_bytes, 4 * policy.resize_max_pixels + MIB)
    data = _b64decode(url[match.end():], where, max_bytes)
    with _readable(where, policy):
        _open(data, where, policy, max_bytes=max_bytes)


def to_data_url(image: Image.Image) -> str:
    """PNG-encode an image as a `data:` URL (the OpenAI-style `image_url` content format)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def from_data_url(url: str) -> Image.Image:
    """Decode a `data:` URL produced by `to_data_url` (used by the local HF backends)."""
    return Image.open(io.BytesIO(base64.b64decode(url.partition(",")[2]))).convert("RGB")


def _counted(sources: Sequence[ImageInput], policy: ImagePolicy) -> list[ImageInput]:
    if not isinstance(sources, (list, tuple)):
        sources = [sources]
    if len(sources) > policy.max_images:
        raise ImageInputError(f"{len(sources)} images given; the limit is max_images={policy.max_images}")
    return list(sources)


def _load_one(src: ImageInput, where: str, policy: ImagePolicy) -> Image.Image:
    encoded = _encoded(src, where, policy)
    with _readable(where, policy):
        if isinstance(encoded, Image.Image):
            _check_size(encoded.size, where, policy)
            encoded.load()  # a lazily opened file may still fail here (truncated, corrupt)
            return _fit_area(_to_rgb(encoded), policy)
        image = _open(encoded, where, policy)
        fitted = _fitted_size(image.size, policy)
        if fitted[0] * fitted[1] < image.width * image.height:
            image.draft(None, fitted)  # JPEG decodes straight to a reduced scale; a no-op for other formats
        image.load()  # the first frame of an animated image
        rgb = _to_rgb(image)
        if rgb is not image:
            image.close()  # frees the decoded pixels before resizing
        return _fit_area(rgb, policy)


def _encoded(src: ImageInput, where: str, policy: ImagePolicy) -> bytes | Image.Image:
    """The source's encoded bytes (read, decoded from base64 or fetched), or the PIL image itself."""
    if isinstance(src, Image.Image):
        return src
    if isinstance(src, (bytes, bytearray, memoryview)):
        return bytes(src)
    if isinstance(src, os.PathLike):
        return _read_path(src, where, policy)
    if not isinstance(src, str) or not src.strip():
        raise ImageInputError(
            f"{where}: expected a path, URL, base64 string, bytes or PIL image, got {type(src).__name__}"
            + (" (empty)" if isinstance(src, str) else "")
        )
    text = src.strip()
    if text.startswith("data:"):
        return _data_url_bytes(text, where, policy)
    if text.startswith(("http://", "https://")):
        return _fetch_url(text, where, policy)
    compact = "".join(text.split())
    if not _is_base64(compact):
        return _read_path(text, where, policy)
    if _has_image_signature(compact, policy):
        return _b64decode(compact, where, policy.max_bytes)
    hint = f"; nor is it base64 of an image in an accepted format ({', '.join(policy.formats)})"
    return _read_path(text, where, policy, hint=hint)


def _data_url_bytes(url: str, where: str, policy: ImagePolicy) -> bytes:
    header, comma, payload = url[len("data:"):].partition(",")
    params = header.split(";")
    media_type = params[0].strip().lower()
    if not comma or params[-1].strip().lower() != "base64" or not (media_type.startswith("image/") or not media_type):
        raise ImageInputError(f"{where}: a data URL must read data:image/<type>;base64,<data>, got {url[:40]!r}...")
    return _b64decode("".join(payload.split()), where, policy.max_bytes)


def _is_base64(compact: str) -> bool:
    return len(compact) % 4 == 0 and _BASE64.fullmatch(compact) is not None


def _has_image_signature(base64_text: str, policy: ImagePolicy) -> bool:
    """Whether the decoded first bytes are an accepted format's signature (PIL's own format test)."""
    head = base64.b64decode(base64_text[:24])[:16]  # PIL identifies a format from the first 16 bytes
    Image.init()
    for name in policy.formats:
        accept = Image.OPEN.get(name.upper(), (None, None))[1]
        verdict = accept(head) if accept is not None else False
        if verdict and not isinstance(verdict, str):  # a str verdict is PIL's reason for refusing
            return True
    return False


def _b64decode(data: str, where: str, max_bytes: int) -> bytes:
    if len(data) // 4 * 3 > max_bytes:
        raise ImageInputError(f"{where}: about {len(data) // 4 * 3} bytes of base64 data; the limit is max_bytes={max_bytes}")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ImageInputError(f"{where}: invalid base64 data") from None


def _read_path(src: str | os.PathLike, where: str, policy: ImagePolicy, hint: str = "") -> bytes:
    if not policy.allow_local_paths:
        raise ImageInputError(f"{where}: local file paths are not accepted here; send the image as base64{hint}")
    shown = f"{os.fspath(src)!r:.120}"
    try:
        path = Path(src).expanduser()
        if policy.allowed_root is not None:
            root = policy.allowed_root.resolve()
            path = (root / path).resolve()  # an absolute `path` replaces `root`
            if not path.is_relative_to(root):
                raise ImageInputError(f"{where}: path {shown} is outside the allowed image root")
        # O_NONBLOCK: opening a FIFO must not wait for a writer
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as file:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ImageInputError(f"{where}: {shown} is not a regular file{hint}")
            if info.st_size > policy.max_bytes:
                raise ImageInputError(f"{where}: file is {info.st_size} bytes; the limit is max_bytes={policy.max_bytes}")
            data = file.read(policy.max_bytes + 1)
    except ImageInputError:
        raise
    except (FileNotFoundError, NotADirectoryError):
        raise ImageInputError(f"{where}: no such image file: {shown}{hint}") from None
    except ValueError:  # embedded NUL byte
        raise ImageInputError(f"{where}: a path must not contain a NUL byte: {shown}{hint}") from None
    except RuntimeError:  # Path.resolve on a symlink loop (Python < 3.13)
        raise ImageInputError(f"{where}: cannot resolve {shown}: symbolic link loop{hint}") from None
    except OSError as exc:
        raise ImageInputError(f"{where}: cannot read {shown}: {exc.strerror or exc}{hint}") from None
    if len(data) > policy.max_bytes:
        raise ImageInputError(f"{where}: file exceeds max_bytes={policy.max_bytes}")
    return data


def _check_url(url: str, where: str, policy: ImagePolicy) -> None:
    if not policy.allow_urls:
        raise ImageInputError(f"{where}: image URLs are disabled (set ImagePolicy.allow_urls to fetch them)")
    _refuse_private_host(urlparse(url).hostname or "", where)


class _PublicRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to another public http(s) address."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if not newurl.startswith(("http://", "https://")):
            raise ImageInputError(f"redirect to {newurl!r} refused: only http(s) URLs are fetched")
        _refuse_private_host(urlparse(newurl).hostname or "", f"redirect to {newurl!r}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _fetch_url(url: str, where: str, policy: ImagePolicy) -> bytes:
    _check_url(url, where, policy)
    opener = urllib.request.build_opener(_PublicRedirects)
    try:
        with opener.open(url, timeout=policy.url_timeout_s) as response:
            data = response.read(policy.max_bytes + 1)
    except OSError as exc:
        raise ImageInputError(f"{where}: cannot fetch {url!r}: {exc}") from None
    if len(data) > policy.max_bytes:
        raise ImageInputError(f"{where}: download exceeds max_bytes={policy.max_bytes}")
    return data


def _refuse_private_host(host: str, where: str) -> None:
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        raise ImageInputError(f"{where}: cannot resolve host {host!r}") from None
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not ip.is_global or ip.is_multicast:  # private, loopback, link-local, shared, reserved...
            raise ImageInputError(f"{where}: host {host!r} resolves to a non-public address ({ip})")


@contextlib.contextmanager
def _readable(where: str, policy: ImagePolicy) -> Iterator[None]:
    """Turn PIL's many error types for bad data into `ImageInputError` naming the image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (ImageInputError, MemoryError):
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageInputError(f"{where}: image is a decompression bomb ({exc}); the limit is max_pixels={policy.max_pixels}") from None
    except Image.UnidentifiedImageError:
        raise ImageInputError(f"{where}: not a readable image in an accepted format ({', '.join(policy.formats)})") from None
    except Exception as exc:  # PIL raises many types for corrupt data and odd modes
        raise ImageInputError(f"{where}: not a readable image ({type(exc).__name__}: {exc})") from None


def _open(data: bytes, where: str, policy: ImagePolicy, *, max_bytes: int | None = None) -> Image.Image:
    """Parse the header only (`Image.open` is lazy) and check the limits; call inside `_readable`."""
    max_bytes = policy.max_bytes if max_bytes is None else max_bytes
    if len(data) > max_bytes:
        raise ImageInputError(f"{where}: {len(data)} bytes; the limit is max_bytes={max_bytes}")
    image = Image.open(io.BytesIO(data), formats=policy.formats)
    _check_size(image.size, where, policy)
    return image


def _check_size(size: tuple[int, int], where: str, policy: ImagePolicy) -> None:
    width, height = size
    shape = f"{where}: {width}x{height} px"
    if width > policy.max_width:
        raise ImageInputError(f"{shape} is {width} px wide; the limit is max_width={policy.max_width}")
    if height > policy.max_height:
        raise ImageInputError(f"{shape} is {height} px tall; the limit is max_height={policy.max_height}")
    if width < 1 or height < 1:
        raise ImageInputError(f"{shape} has no pixels")
    if max(width, height) > policy.max_aspect_ratio * min(width, height):
        ratio = max(width, height) / min(width, height)
        raise ImageInputError(f"{shape} has aspect ratio {ratio:.6g}; the limit is max_aspect_ratio={policy.max_aspect_ratio:g}")
    if width * height > policy.max_pixels:
        raise ImageInputError(f"{where}: {width}x{height} = {width * height} pixels; the limit is max_pixels={policy.max_pixels}")


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB as a viewer shows it: 16-bit samples scaled, transparency composited on white."""
    if image.mode in _SIXTEEN_BIT_MODES:
        if image.mode not in ("I", "I;16"):
            image = image.convert("I")  # byte-swapped 16-bit variants have no point()
        image = image.point(lambda v: v / 257 + 0.5).convert("L")  # 0..65535 -> 0..255, rounded
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        if image.mode == "La":
            image = image.convert("LA")  # premultiplied -> straight alpha (PIL has no La -> RGBA)
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        composite = Image.new("RGB", rgba.size, "white")
        composite.paste(rgba, mask=rgba)
        return composite
    return image if image.mode == "RGB" else image.convert("RGB")


def _fitted_size(size: tuple[int, int], policy: ImagePolicy) -> tuple[int, int]:
    """`size` scaled (aspect kept) so its area lies in [resize_min_pixels, resize_max_pixels], within the
    width and height limits."""
    width, height = size
    area = width * height
    target = min(max(area, policy.resize_min_pixels), policy.resize_max_pixels)
    if target == area:
        return size
    scale = min((target / area) ** 0.5, policy.max_width / width, policy.max_height / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _fit_area(image: Image.Image, policy: ImagePolicy) -> Image.Image:
    size = _fitted_size(image.size, policy)
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
