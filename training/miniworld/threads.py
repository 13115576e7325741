"""The run's CPU thread share, optionally handed over while it runs (`--threads-file`).

A run that shares the machine (CI runs the quick pipeline beside the rest of the test suite) starts
on one thread; whoever owns the machine writes a larger count into the file when the other work is
done, and the run takes it up at its next stage and, while training, at its next step (a file read: microseconds
beside a step).
"""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import TrainerCallback

log = logging.getLogger(__name__)


class ThreadShare:
    """Torch threads: a fixed count, or the count written in `path` (the fixed count while it is unreadable)."""

    def __init__(self, threads: int, path: Path | None = None) -> None:
        self.threads, self.path = threads, path

    def current(self) -> int:
        if self.path is not None:
            try:
                return max(1, int(self.path.read_text().strip()))
            except (OSError, ValueError):
                pass
        return self.threads

    def apply(self) -> int:
        """Set torch's thread count to the current share (CPU only); return it."""
        import torch

        threads = self.current()
        if not torch.cuda.is_available() and torch.get_num_threads() != threads:
            log.info("torch threads: %d -> %d", torch.get_num_threads(), threads)
            torch.set_num_threads(threads)
        return threads

    def callback(self) -> TrainerCallback:
        """A trainer callback that applies the share before every step (nothing when it is fixed)."""
        share = self

        class _Follow(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                if share.path is not None:
                    share.apply()

        return _Follow()
