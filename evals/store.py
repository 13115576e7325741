"""A run's output folder: its configuration (`config.json`) and per-sample results (`samples.jsonl`).

Results are appended one JSON line per finished sample and flushed at once, so a crash, Ctrl-C or
SIGKILL loses at most the line being written (a torn last line is dropped when the folder is
reopened). A folder holds results of one configuration only; opening it with another is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from evals.judge import JudgeVerdict
from evals.metrics import Outcome
from rapid_agent.errors import ConfigError, InputError

CONFIG_FILE = "config.json"
SAMPLES_FILE = "samples.jsonl"
Mode = Literal["decoupled", "direct", "blind"]


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
    prediction: str | None = None
    correct: bool = False
    method: str | None = None
    judge: JudgeVerdict | None = None
    error: str | None = None
    perception_cached: bool | None = None
    perception_usage: list[dict[str, Any]] = Field(default_factory=list)
    usage: list[dict[str, Any]] = Field(default_factory=list)
    latency_s: float = 0.0
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.run, self.benchmark, self.id

    def outcome(self) -> Outcome:
        return Outcome(id=self.id, correct=self.correct and self.error is None, metadata=self.metadata)


class RunStore:
    """Reads and appends the results of one output folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.samples_path = folder / SAMPLES_FILE
        self._handle = None

    @classmethod
    def open(cls, folder: str | Path, config: dict[str, Any], *, resume: bool) -> RunStore:
        """Open (or create) `folder` for `config`; refuses a different config, or old results without `resume`."""
        store = cls(Path(folder).expanduser())
        config_path = store.folder / CONFIG_FILE
        count = len(store.records())
        if config_path.is_file() and count:
            old = json.loads(config_path.read_text())
            if old != config:
                raise ConfigError(
                    f"refusing to mix results: {str(store.folder)!r} holds a run with a different configuration "
                    f"({_differences(old, config)}); choose another --output-dir or delete that folder"
                )
            if not resume:
                raise ConfigError(
                    f"{str(store.folder)!r} already holds {count} results of this configuration; pass --resume to "
                    "continue it (finished samples are kept), or choose another --output-dir"
                )
        elif count:
            raise ConfigError(f"{str(store.folder)!r} has {SAMPLES_FILE} but no {CONFIG_FILE}; refusing to mix results")
        else:  # a new folder, or one whose run stopped before any result (e.g. an unreachable endpoint)
            store.folder.mkdir(parents=True, exist_ok=True)
            config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        store._repair_tail()
        return store

    def records(self) -> list[SampleRecord]:
        """The latest record of each (run, benchmark, sample), in first-seen order."""
        return list(read_records(self.samples_path).values())

    def append(self, record: SampleRecord) -> None:
        if self._handle is None:
            self._handle = self.samples_path.open("a", encoding="utf-8")
        self._handle.write(record.model_dump_json() + "\n")
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def _repair_tail(self) -> None:
        """Drop a torn last line (a process killed mid-write) so appends start on a fresh line."""
        if not self.samples_path.is_file():
            return
        data = self.samples_path.read_bytes()
        if data and not data.endswith(b"\n"):
            self.samples_path.write_bytes(data[: data.rfind(b"\n") + 1])


def read_records(path: Path) -> dict[tuple[str, str, str], SampleRecord]:
    """Records of a `samples.jsonl`, the last one per key winning (a resumed error is replaced)."""
    records: dict[tuple[str, str, str], SampleRecord] = {}
    if not path.is_file():
        return records
    lines = path.read_text(encoding="utf-8").split("\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = SampleRecord.model_validate_json(line)
        except ValueError as exc:
            if number == len(lines):  # torn last line of a killed run
                break
            raise InputError(f"{path}:{number}: not a sample record ({str(exc)[:200]})") from None
        records[record.key] = record
    return records


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(set(old) | set(new))
    diffs = [f"{k}: {json.dumps(old.get(k))} there vs {json.dumps(new.get(k))} now" for k in keys if old.get(k) != new.get(k)]
    return "; ".join(diffs)[:600]
