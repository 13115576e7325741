"""An exclusive lock on an eval output folder, so one run at a time writes it.

`filelock` holds an OS-level lock (`flock`) on `.lock` inside the folder: the operating system
releases it when its process exits, however it exits (SIGKILL included), so a lock left by a killed
run is simply taken over. The holder writes its pid, host and start time into the lock file (once
it holds the lock, through filelock's `on_acquired` hook, which also rules out filelock's soft-lock
fallback: a file system without `flock` is refused), so a refused run can say who holds the folder.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from filelock import FileLock, Timeout

from rapid_agent.errors import RapidError

LOCK_FILE = ".lock"


class StorageError(RapidError):
    """An output folder or the caption cache cannot be used: disk full, read-only, corrupt, foreign."""


class FolderBusyError(RapidError):
    """Another process holds the output folder."""


class FolderLock:
    """The exclusive lock of one output folder; `acquire` fails at once when another process holds it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / LOCK_FILE
        self._lock = FileLock(self.path, thread_local=False, on_acquired=_record_holder)

    def acquire(self) -> None:
        """Take the lock, or raise `FolderBusyError` naming its holder and how to proceed."""
        try:
            self._lock.acquire(blocking=False)
        except Timeout:
            raise FolderBusyError(
                f"{str(self.folder)!r} is in use by another eval run ({self.holder()}); wait for it to finish "
                "or stop it, then continue with --resume, or choose another --output-dir"
            ) from None
        except OSError as exc:
            raise StorageError(
                f"cannot lock the output folder: {describe_os_error(exc, self.path)}; choose an --output-dir on a "
                "writable local file system"
            ) from None

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release()

    def holder(self) -> str:
        """Who holds the lock, as its holder recorded it: 'pid N on HOST since TIME'."""
        try:
            owner = json.loads(self.path.read_bytes())
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner["started"]))
            return f"pid {int(owner['pid'])} on {owner['host']} since {since}"
        except (OSError, ValueError, KeyError, TypeError):  # the holder has not written it yet
            return "a process that has not recorded its pid yet"


def _record_holder(fd: int) -> None:
    """Called by filelock with the lock file's descriptor once the lock is held."""
    data = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def describe_os_error(exc: OSError, path: Path | str) -> str:
    """'PATH: reason' for a failed file operation."""
    return f"{exc.filename or path}: {exc.strerror or exc}"
