"""Peak memory of `load_images` per image, each measured on its own in a fresh process (Linux only).

    python -m rapid_agent.testing.image_memory '<ImagePolicy JSON>' a.png b.webp ...

prints `{path: peak resident-set growth in bytes while loading it}` as JSON. `peak_rss_growth` runs
that with glibc returning freed buffers to the system at once, so no image hides in another's heap.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from rapid_agent.images import ImagePolicy, load_images

SUPPORTED = Path("/proc/self/clear_refs").exists()


def peak_rss_growth(paths: Sequence[str | Path], policy: ImagePolicy, timeout_s: float = 600) -> dict[str, int]:
    """{path: bytes} of peak RSS growth while `load_images([path's bytes], policy)` ran."""
    result = subprocess.run(
        [sys.executable, "-m", __name__, policy.model_dump_json(), *map(str, paths)],
        capture_output=True, text=True, timeout=timeout_s,
        env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"},  # big buffers are mmapped, freed at once
    )
    if result.returncode:
        raise RuntimeError(f"measuring peak memory failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout)


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith(key))


def _warm_up(path: str, policy: ImagePolicy) -> None:
    """Load a tiny image of the same format and mode, so plugin and codec set-up is not measured."""
    with Image.open(path) as image:
        mode, fmt = image.mode, image.format
    buffer = io.BytesIO()
    Image.new(mode, (8, 8)).save(buffer, format=fmt)
    load_images([buffer.getvalue()], policy)


def main(argv: Sequence[str]) -> None:
    policy = ImagePolicy.model_validate_json(argv[0])
    paths = list(argv[1:])
    for path in paths:
        _warm_up(path, policy)
    peaks = {}
    for path in paths:
        data = Path(path).read_bytes()
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")  # resets VmHWM, the peak resident set size, to the current one
        before = _status_bytes("VmRSS:")
        load_images([data], policy)
        peaks[path] = _status_bytes("VmHWM:") - before
    print(json.dumps(peaks))


if __name__ == "__main__":
    main(sys.argv[1:])
