"""Image inputs → RGB `PIL.Image`, under explicit limits and an allowed-root policy.

Accepted sources: a `PIL.Image`, raw bytes, a base64 string or `data:` URL, a local file path
(restricted to `ImagePolicy.allowed_root` when set), and an http(s) URL (only when
`ImagePolicy.allow_urls`; loopback, link-local and private addresses are refused).
"""

from __future__ import annotations

import base64
import binascii
import io
import ipaddress
import socket
import urllib.request
import warnings
from pathlib import Path
from urllib.parse import urlparse

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from rapid_agent.errors import ImageInputError

ImageInput = str | bytes | Image.Image

MIB = 1024 * 1024


class ImagePolicy(BaseModel):
    """Where images may come from and how big they may be. Defaults suit local, trusted use."""

    model_config = ConfigDict(frozen=True)

    allowed_root: Path | None = Field(None, description="Local paths must resolve inside this folder.")
    allow_local_paths: bool = True
    allow_urls: bool = False
    max_bytes: int = Field(32 * MIB, gt=0, description="Largest encoded image accepted.")
    max_pixels: int = Field(64_000_000, gt=0, description="Largest decoded width*height (bomb guard).")
    max_images: int = Field(8, gt=0, description="Most images per request (the paper uses up to 8).")
    url_timeout_s: float = Field(10.0, gt=0)
    formats: tuple[str, ...] = Field(
        ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"),
        description="PIL formats accepted (others, e.g. EPS, which runs Ghostscript, are refused).",
    )
    resize_min_pixels: int = Field(512 * 512, gt=0, description="Upscale smaller images to this area.")
    resize_max_pixels: int = Field(2048 * 2048, gt=0, description="Downscale larger images to this area.")


def load_images(sources: list[ImageInput], policy: ImagePolicy) -> list[Image.Image]:
    """Load and check every image of a request; raises `ImageInputError` naming the bad one."""
    return [_load_one(src, i, policy) for i, src in enumerate(_counted(sources, policy))]


def check_images(sources: list[ImageInput], policy: ImagePolicy) -> None:
    """Check a request's images as `load_images` would, without keeping them (request-time validation).

    URLs are checked against the policy and their host's addresses, but not fetched.
    """
    for i, src in enumerate(_counted(sources, policy)):
        if isinstance(src, str) and src.strip().startswith(("http://", "https://")):
            _check_url(src.strip(), f"image {i}", policy)
        else:
            _load_one(src, i, policy)


def _counted(sources: list[ImageInput], policy: ImagePolicy) -> list[ImageInput]:
    if not isinstance(sources, (list, tuple)):
        sources = [sources]
    if len(sources) > policy.max_images:
        raise ImageInputError(f"{len(sources)} images given; the limit is max_images={policy.max_images}")
    return list(sources)


def _load_one(src: ImageInput, index: int, policy: ImagePolicy) -> Image.Image:
    where = f"image {index}"
    if isinstance(src, Image.Image):
        _check_pixels(src.size, where, policy)
        return _fit_area(src.convert("RGB"), policy)
    if isinstance(src, (bytes, bytearray)):
        return _decode(bytes(src), where, policy)
    if not isinstance(src, str) or not src.strip():
        raise ImageInputError(f"{where}: expected a path, URL, base64 string, bytes or PIL image, got {type(src).__name__}")
    src = src.strip()
    if src.startswith("data:"):
        return _decode(_b64decode(src.partition(",")[2], where), where, policy)
    if src.startswith(("http://", "https://")):
        return _decode(_fetch_url(src, where, policy), where, policy)
    if _looks_like_base64(src):
        return _decode(_b64decode(src, where), where, policy)
    return _decode(_read_path(src, where, policy), where, policy)


def _read_path(src: str, where: str, policy: ImagePolicy) -> bytes:
    if not policy.allow_local_paths:
        raise ImageInputError(f"{where}: local file paths are not accepted here; send the image as base64")
    path = Path(src).expanduser()
    if policy.allowed_root is not None:
        root = policy.allowed_root.resolve()
        resolved = (root / path).resolve() if not path.is_absolute() else path.resolve()
        if not resolved.is_relative_to(root):
            raise ImageInputError(f"{where}: path {src!r} is outside the allowed image root")
        path = resolved
    if not path.is_file():
        raise ImageInputError(f"{where}: no such image file: {src!r}")
    size = path.stat().st_size
    if size > policy.max_bytes:
        raise ImageInputError(f"{where}: file is {size} bytes; the limit is max_bytes={policy.max_bytes}")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageInputError(f"{where}: cannot read {src!r}: {exc.strerror}") from None


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


def _looks_like_base64(src: str) -> bool:
    return len(src) > 256 and "/" not in src[:64].replace("+", "") and "." not in src[-8:]


def _b64decode(data: str, where: str) -> bytes:
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        raise ImageInputError(f"{where}: invalid base64 data") from None


def _decode(data: bytes, where: str, policy: ImagePolicy) -> Image.Image:
    if len(data) > policy.max_bytes:
        raise ImageInputError(f"{where}: {len(data)} bytes; the limit is max_bytes={policy.max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=policy.formats)
            _check_pixels(image.size, where, policy)
            image.load()
    except ImageInputError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageInputError(f"{where}: image is a decompression bomb ({exc}); the limit is max_pixels={policy.max_pixels}") from None
    except Image.UnidentifiedImageError:
        raise ImageInputError(f"{where}: not a readable image in an accepted format ({', '.join(policy.formats)})") from None
    except Exception as exc:  # PIL raises many types for corrupt data
        raise ImageInputError(f"{where}: not a readable image ({type(exc).__name__}: {exc})") from None
    return _fit_area(image.convert("RGB"), policy)


def _check_pixels(size: tuple[int, int], where: str, policy: ImagePolicy) -> None:
    pixels = size[0] * size[1]
    if pixels > policy.max_pixels:
        raise ImageInputError(f"{where}: {size[0]}x{size[1]} = {pixels} pixels; the limit is max_pixels={policy.max_pixels}")


def _fit_area(image: Image.Image, policy: ImagePolicy) -> Image.Image:
    """Resize (keeping aspect) so the area lies in [resize_min_pixels, resize_max_pixels]."""
    area = image.width * image.height
    target = min(max(area, policy.resize_min_pixels), policy.resize_max_pixels)
    if target == area:
        return image
    scale = (target / area) ** 0.5
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)


def to_data_url(image: Image.Image) -> str:
    """PNG-encode an image as a `data:` URL (the OpenAI-style `image_url` content format)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def from_data_url(url: str) -> Image.Image:
    """Decode a `data:` URL produced by `to_data_url` (used by the local HF backends)."""
    return Image.open(io.BytesIO(base64.b64decode(url.partition(",")[2]))).convert("RGB")
