"""Image limits: hostile images are refused for less than an ordinary image costs, and peak memory per
image stays proportional to the pixel limit.

(a) Time to refuse tiny PNGs declaring 39,999,999x1 and 64,000,000x1 pixels (before: 8.6 s and 1.9 GB,
    or a MemoryError) vs time to load one ordinary 1024x768 photo-like PNG, default policy.
    Target: ratio <= 0.1.
(b) Peak RSS growth per pixel while loading the worst images a `--max-pixels` limit lets through
    (RGBA PNG, 16-bit PNG, RGBA WebP, aspect ratio 200). Target: <= 32 bytes per pixel (measured: 8 for PNG, 16 for WebP).

    python benchmarks/image_limits.py [--max-pixels 16000000] [--repeat 20]
"""

from __future__ import annotations

import argparse
import io
import struct
import tempfile
import time
import zlib
from pathlib import Path

from PIL import Image

from rapid_agent import ImageInputError, ImagePolicy, load_images
from rapid_agent.testing import image_memory


def png_claiming(width: int, height: int, colour_type: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10_000)) + chunk(b"IEND", b"")


def seconds_per_call(fn, repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def refuse(data: bytes) -> None:
    try:
        load_images([data], ImagePolicy())
    except ImageInputError:
        return
    raise AssertionError("a hostile image was accepted")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-pixels", type=int, default=16_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    buffer = io.BytesIO()
    Image.effect_noise((1024, 768), 40).convert("RGB").save(buffer, format="PNG")
    ordinary = seconds_per_call(lambda: load_images([buffer.getvalue()], ImagePolicy()), args.repeat)
    print(f"(a) ordinary 1024x768 PNG: {ordinary * 1000:.1f} ms")
    for width, colour_type in [(39_999_999, 0), (64_000_000, 2)]:
        hostile = png_claiming(width, 1, colour_type)
        refused = seconds_per_call(lambda hostile=hostile: refuse(hostile), args.repeat)
        print(f"    refuse {width}x1 ({len(hostile)} bytes): {refused * 1000:.2f} ms, ratio {refused / ordinary:.4f}")

    side, short = int(args.max_pixels**0.5), int((args.max_pixels / 200) ** 0.5)
    worst = {
        "RGBA PNG": ((side, side), "RGBA", "PNG"),
        "16-bit PNG": ((side, side), "I;16", "PNG"),
        "RGBA WebP": ((min(side, 16_383), args.max_pixels // min(side, 16_383)), "RGBA", "WEBP"),
        "aspect-200 RGBA PNG": ((200 * short, short), "RGBA", "PNG"),
    }
    policy = ImagePolicy(max_pixels=args.max_pixels, max_width=65_535, max_height=65_535, max_bytes=2**30)
    if not image_memory.SUPPORTED:
        print("(b) skipped: needs Linux /proc peak-RSS reset")
        return
    with tempfile.TemporaryDirectory() as folder:
        paths = {}
        for name, (size, mode, fmt) in worst.items():
            paths[name] = Path(folder) / f"{len(paths)}.{fmt.lower()}"
            Image.new(mode, size).save(paths[name], format=fmt)
        peaks = image_memory.peak_rss_growth(list(paths.values()), policy)
    print(f"(b) peak RSS growth at max_pixels={args.max_pixels:,}:")
    for name, path in paths.items():
        size = worst[name][0]
        peak = peaks[str(path)]
        print(f"    {name} {size[0]}x{size[1]}: {peak / 2**20:.0f} MiB = {peak / (size[0] * size[1]):.1f} bytes/pixel")


if __name__ == "__main__":
    main()
