"""A micro-batcher: concurrent requests gathered into one batched call.

Callers on any thread (or event loop, through `asyncio.wrap_future`) `submit` one item and get a
`Future`. A single worker thread waits for the first item, then keeps gathering until
`max_batch_size` items are queued or `max_wait_s` has passed, and runs them as one batch. Items
with different `group` keys (e.g. different generation settings) never share a batch.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    """Run `run_batch(items) -> results` (same length, same order) over gathered concurrent submits."""

    def __init__(
        self,
        run_batch: Callable[[list[T]], list[R]],
        *,
        max_batch_size: int = 8,
        max_wait_s: float = 0.01,
        name: str = "micro-batcher",
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        self._run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self._queue: queue.SimpleQueue[tuple[Hashable, T, Future[R]]] = queue.SimpleQueue()
        self._held: list[tuple[Hashable, T, Future[R]]] = []
        self._name = name
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, item: T, group: Hashable = None) -> Future[R]:
        """Queue one item; its result (or the batch's exception) arrives on the returned future."""
        future: Future[R] = Future()
        self._queue.put((group, item, future))
        self._ensure_worker()
        return future

    def _ensure_worker(self) -> None:
        if self._worker is not None:
            return
        with self._start_lock:
            if self._worker is None:
                self._worker = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._worker.start()

    def _loop(self) -> None:
        while True:
            batch = self._gather()
            items = [item for _, item, _ in batch]
            try:
                results = self._run_batch(items)
                if len(results) != len(items):
                    raise RuntimeError(f"run_batch returned {len(results)} results for {len(items)} items")
            except BaseException as exc:  # every waiting caller must hear about it
                for _, _, future in batch:
                    future.set_exception(exc)
                continue
            for (_, _, future), result in zip(batch, results, strict=False):
                future.set_result(result)

    def _gather(self) -> list[tuple[Hashable, T, Future[R]]]:
        """Block for a first item, then gather same-group items until full or the wait expires."""
        first = self._held.pop(0) if self._held else self._queue.get()
        batch, group = [first], first[0]
        kept = []
        for entry in self._held:
            (batch if entry[0] == group and len(batch) < self.max_batch_size else kept).append(entry)
        self._held = kept
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch_size:
            timeout = deadline - time.monotonic()
            try:
                entry = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            (batch if entry[0] == group else self._held).append(entry)
        return batch
