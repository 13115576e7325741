"""A run's output folder: its configuration (`config.json`) and per-sample results (`samples.jsonl`).

One run at a time holds a folder (`evals.lock.FolderLock`; a second one is refused, naming the
holder). A folder holds the results of one configuration only: opening it with another is refused,
naming the settings that differ, and every record carries its configuration's digest, checked on
every read. Results are appended one JSON line per finished sample, written at once, so a crash,
Ctrl-C, SIGKILL or full disk loses at most the line being written; such a torn last line (any bytes,
e.g. cut inside a multi-byte character) is dropped when the folder is reopened.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from evals.judge import JudgeVerdict
from evals.lock import FolderLock, StorageError, describe_os_error
from evals.metrics import Outcome
from rapid_agent.errors import ConfigError, InputError

CONFIG_FILE = "config.json"
SAMPLES_FILE = "samples.jsonl"
Mode = Literal["decoupled", "direct", "blind"]
log = logging.getLogger(__name__)


class VoteRecord(BaseModel):
    """The k reasoner samples behind a voted record: each one's output, graded prediction and verdict,
    and the vote's outcome (`rapid_agent.voting`); the record's prediction is the vote's."""

    outcome: Literal["majority", "tie", "no_answer"]
    outputs: list[str]
    predictions: list[str | None]
    correct: list[bool]


class SampleRecord(BaseModel):
    """One sample evaluated by one run (reasoner + mode): one line of `samples.jsonl`."""

    run: str
    mode: Mode
    captioner: str | None
    reasoner: str | None
    benchmark: str
    id: str
    question: str
    options: list[str] | None = None
    gold: list[str]
    captions: list[str] = Field(default_factory=list)
    tentative_answer: str | None = None
    output: str | None = None  # the reasoner's full text (direct mode: the MLLM's)
    prediction: str | None = None  # the answer extracted from `output`: the graph's (see `rapid_agent.answers`)
    correct: bool = False
    method: str | None = None
    judge: JudgeVerdict | None = None
    error: str | None = None
    truncated: bool = False  # the output hit its token limit (the graph's `truncated`)
    votes: VoteRecord | None = None  # k reasoner samples (`EvalConfig.reasoner_samples` > 1)
    perception_cached: bool | None = None
    perception_usage: list[dict[str, Any]] = Field(default_factory=list)
    usage: list[dict[str, Any]] = Field(default_factory=list)
    latency_s: float = 0.0
    metadata: dict[str, Any] = Field(default_factory=dict)
    config_digest: str | None = None  # the run configuration's digest, set when the record is stored

    @property
    def key(self) -> tuple[str, str, str]:
        return self.run, self.benchmark, self.id

    def outcome(self) -> Outcome:
        return Outcome(id=self.id, correct=self.correct and self.error is None, metadata=self.metadata)


def config_digest(identity: dict[str, Any]) -> str:
    """The digest of a run configuration's identity (its JSON form): names default folders, tags records."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]


class RunStore:
    """One output folder, held exclusively from `open` to `close`: reads and appends its results."""

    def __init__(self, folder: Path, config: dict[str, Any], lock: FolderLock) -> None:
        self.folder = folder
        self.samples_path = folder / SAMPLES_FILE
        self.digest = config_digest(config)
        self._lock = lock
        self._fd: int | None = None
        self._failed: StorageError | None = None

    @classmethod
    def open(cls, folder: str | Path, config: dict[str, Any], *, resume: bool) -> RunStore:
        """Lock (or create) `folder` for `config`.

        Refuses a folder another process holds, one holding another configuration's results, and
        old results without `resume`; drops a torn last line.
        """
        folder = Path(folder).expanduser()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"cannot create the output folder: {describe_os_error(exc, folder)}; {_fix(exc)}"
            ) from None
        lock = FolderLock(folder)
        lock.acquire()
        store = cls(folder, config, lock)
        try:
            store._admit(config, resume=resume)
        except BaseException:
            store.close()
            raise
        return store

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def records(self) -> list[SampleRecord]:
        """The latest record of each (run, benchmark, sample), in first-seen order; all of this configuration."""
        return self._checked(read_records(self.samples_path).values())

    def append(self, record: SampleRecord) -> None:
        """Write one record as one line, at once; after a failed write the store refuses further appends."""
        if self._failed is not None:
            raise self._failed
        data = (record.model_copy(update={"config_digest": self.digest}).model_dump_json() + "\n").encode()
        try:
            if self._fd is None:
                self._fd = os.open(self.samples_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            _write_all(self._fd, data)
        except OSError as exc:
            self._failed = StorageError(
                f"cannot write a result: {describe_os_error(exc, self.samples_path)}; finished samples are kept "
                f"in {str(self.folder)!r}: {_fix(exc)}, then continue with --resume"
            )
            raise self._failed from None

    def close(self) -> None:
        """Stop writing and release the folder."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._lock.release()

    def _admit(self, config: dict[str, Any], *, resume: bool) -> None:
        """Check `config` and `resume` against the folder's content, then record the config or cut a torn tail."""
        config_path = self.folder / CONFIG_FILE
        data = self.samples_path.read_bytes() if self.samples_path.is_file() else b""
        parsed, intact = _parse(data, self.samples_path)
        records = {r.key: r for r in parsed}
        if not records:  # a new folder, or one whose run stopped before any result (e.g. an unreachable endpoint)
            self._write_config(config_path, config)
            return
        if not config_path.is_file():
            raise ConfigError(f"{str(self.folder)!r} has {SAMPLES_FILE} but no {CONFIG_FILE}; refusing to mix results")
        try:
            old = json.loads(config_path.read_bytes())
        except ValueError:
            raise ConfigError(f"{str(config_path)!r} is not valid JSON; refusing to mix results") from None
        if old != config:
            raise ConfigError(
                f"refusing to mix results: {str(self.folder)!r} holds a run with a different configuration "
                f"({_differences(old, config)}); choose another --output-dir (or a fresh folder)"
            )
        if not resume:
            raise ConfigError(
                f"{str(self.folder)!r} already holds {len(records)} results of this configuration; pass --resume "
                "to continue it (finished samples are kept), or choose another --output-dir"
            )
        self._checked(records.values())
        if intact < len(data):  # cut the torn last line so appends start on a fresh line
            self._truncate(intact)

    def _checked(self, records: Iterable[SampleRecord]) -> list[SampleRecord]:
        """`records`, when every one carries this configuration's digest."""
        records = list(records)
        foreign = [r for r in records if r.config_digest != self.digest]
        if foreign:
            raise ConfigError(
                f"refusing to mix results: {str(self.samples_path)!r} holds {len(foreign)} records of another "
                f"configuration (digest {foreign[0].config_digest}, this one is {self.digest}); "
                "choose another --output-dir"
            )
        return records

    def _write_config(self, path: Path, config: dict[str, Any]) -> None:
        partial = path.with_name(f".{path.name}.partial")
        try:
            partial.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
            os.replace(partial, path)
        except OSError as exc:
            raise StorageError(
                f"cannot write the run configuration: {describe_os_error(exc, path)}; {_fix(exc)}"
            ) from None
        if self.samples_path.is_file():  # nothing but a torn line: start afresh
            self._truncate(0)

    def _truncate(self, size: int) -> None:
        try:
            os.truncate(self.samples_path, size)
        except OSError as exc:
            raise StorageError(
                f"cannot drop the torn last line: {describe_os_error(exc, self.samples_path)}; {_fix(exc)}"
            ) from None


def read_records(path: Path) -> dict[tuple[str, str, str], SampleRecord]:
    """Records of a `samples.jsonl`, the last one per key winning (a resumed error is replaced).

    A torn last line is skipped (and logged); a bad line before it is an `InputError`.
    """
    if not path.is_file():
        return {}
    records, _ = _parse(path.read_bytes(), path)
    return {record.key: record for record in records}


def check_one_configuration(records: Iterable[SampleRecord]) -> None:
    """Raise `InputError` when the records of one run (report row) come from different configurations."""
    digests: dict[str, set[str | None]] = {}
    for record in records:
        digests.setdefault(record.run, set()).add(record.config_digest)
    mixed = {run: found for run, found in digests.items() if len(found) > 1}
    if mixed:
        run, found = next(iter(mixed.items()))
        raise InputError(
            f"refusing to report {run!r}: its records come from {len(found)} configurations "
            f"(digests {sorted(map(str, found))}); report each configuration's folder on its own"
        )


def _parse(data: bytes, path: Path) -> tuple[list[SampleRecord], int]:
    """The records in `samples.jsonl` bytes, and the length of the intact prefix (all but a torn last line).

    Every record is written with its newline in one write: bytes after the last newline, or a last
    line that does not decode or parse, are what a stopped write leaves.
    """
    lines = data.split(b"\n")
    tail = lines.pop()  # after the last newline: empty unless a write was cut
    records: list[SampleRecord] = []
    end = 0
    for number, line in enumerate(lines, 1):
        try:
            if line.strip():
                records.append(SampleRecord.model_validate_json(line.decode("utf-8")))
        except ValueError as exc:  # UnicodeDecodeError and ValidationError included
            if number < len(lines):
                raise InputError(f"{path}:{number}: not a sample record ({str(exc)[:200]})") from None
            tail = line + b"\n" + tail
            break
        end += len(line) + 1
    if tail:
        log.warning("%s: dropping a torn last line (%d bytes) left by a stopped write", path, len(tail))
    return records, end


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fix(exc: OSError) -> str:
    """How to get past a failed write, by its cause."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free some space"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "make it writable or choose another --output-dir"
    return "fix the cause"


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(set(old) | set(new))
    diffs = [f"{k}: {json.dumps(old.get(k))} there vs {json.dumps(new.get(k))} now" for k in keys if old.get(k) != new.get(k)]
    return "; ".join(diffs)[:600]
