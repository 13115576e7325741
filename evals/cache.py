"""The perception cache: captions and tentative answers in SQLite, computed once per input.

An entry's key is the library's `rapid_agent.caching.perception_key`, the key of the graph's own
caption cache too: it hashes everything that decides the captioner's output: which output (caption
or tentative answer), the captioner's identity (`rapid_agent.models.identity`: for local checkpoints
and adapters a fingerprint of the files, so a retrained adapter at the same path misses), the exact
prompt texts of that output (with the preset's key), the images' content, the question with its
options, and the decoding settings. Several processes may share one cache file.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from PIL import Image
from pydantic import BaseModel

from evals.lock import StorageError
from evals.sample import ImageSource
from rapid_agent.caching import image_digest
from rapid_agent.caching import perception_key as library_key
from rapid_agent.models.spec import GenerationSettings
from rapid_agent.prompts import PromptPreset

Kind = Literal["caption", "tentative"]
JudgeKind = Literal["judge-extract", "judge-score"]
_APPLICATION_ID = 0x52415044  # "RAPD": marks a SQLite file as this cache
_SCHEMA_VERSION = 1
_COLUMNS = ("key", "kind", "captioner", "preset", "text", "usage", "created")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS perception (
    key TEXT PRIMARY KEY, kind TEXT NOT NULL, captioner TEXT NOT NULL, preset TEXT NOT NULL,
    text TEXT NOT NULL, usage TEXT NOT NULL, created REAL NOT NULL
)"""


class Entry(BaseModel):
    """A cached captioner output and the usage record of the call that produced it."""

    text: str
    usage: dict[str, Any]


class PerceptionCache:
    """SQLite store of captioner outputs; `hits`/`misses` count this instance's lookups.

    A file that is not a database, holds other tables, or another schema version is refused at
    open; any SQLite failure (corrupt pages, full disk, read-only file) is a `StorageError`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.hits = self.misses = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._error(exc) from None
        with self._guard():
            self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        try:
            with self._guard():
                with self._db:  # commits, or rolls back on an error
                    self._db.execute("BEGIN IMMEDIATE")  # one process at a time creates or checks the schema
                    self._check_schema()  # before any write: a foreign database is left as it was
                self._db.execute("PRAGMA journal_mode=WAL")
        except BaseException:
            self._db.close()
            raise

    def get(self, key: str) -> Entry | None:
        with self._guard():
            row = self._db.execute("SELECT text, usage FROM perception WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return Entry(text=row[0], usage=json.loads(row[1]))

    def put(self, key: str, kind: Kind | JudgeKind, captioner: str, preset: str, entry: Entry) -> None:
        with self._guard():
            self._db.execute(
                "INSERT OR REPLACE INTO perception VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, kind, captioner, preset, entry.text, json.dumps(entry.usage), time.time()),
            )

    def __len__(self) -> int:
        with self._guard():
            return self._db.execute("SELECT COUNT(*) FROM perception").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def _check_schema(self) -> None:
        """Create the table in a new database; refuse a database of another application or version."""
        application = self._db.execute("PRAGMA application_id").fetchone()[0]
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if application not in (0, _APPLICATION_ID) or not tables <= {"perception"}:
            raise self._foreign(f"application id {application:#x}, tables {sorted(tables)}")
        if "perception" in tables:
            columns = tuple(row[1] for row in self._db.execute("PRAGMA table_info(perception)"))
            if columns != _COLUMNS or version not in (0, _SCHEMA_VERSION):
                raise self._foreign(f"schema version {version}, perception columns {list(columns)}")
        if application == 0:  # a new database, or one of the layout before the id
            self._db.execute(_SCHEMA)
            self._db.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
            self._db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    def _foreign(self, found: str) -> StorageError:
        return StorageError(
            f"the caption cache {str(self.path)!r} is not a rapid-agent caption cache ({found}); "
            "pass another --cache, or --no-cache"
        )

    def _error(self, exc: Exception) -> StorageError:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return StorageError(
            f"the caption cache {str(self.path)!r} cannot be used ({reason}); delete it or make room, pass "
            "another --cache, or --no-cache, then continue with --resume"
        )

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn SQLite failures (corrupt file, full disk, read-only file) into a `StorageError`."""
        try:
            yield
        except sqlite3.Error as exc:
            raise self._error(exc) from None


def perception_key(
    kind: Kind,
    captioner: str,
    preset: PromptPreset,
    image_hashes: list[str],
    question: str,
    options: list[str] | None,
    generation: GenerationSettings,
    seed: int,
) -> str:
    """The cache key of one captioner output (`rapid_agent.caching.perception_key`) under an eval's
    decoding settings: a sampled caption (temperature > 0) is keyed by the seed too."""
    decoding = {"temperature": generation.temperature, "top_p": generation.top_p, "max_new_tokens": generation.max_new_tokens}
    if generation.temperature > 0:
        decoding["seed"] = seed  # sampled captions differ per seed
    return library_key(kind, captioner, preset, image_hashes, question, options, decoding)


def image_hash(source: ImageSource) -> str:
    """SHA-256 of an image's content (file bytes, encoded bytes, or decoded pixels)."""
    if isinstance(source, Image.Image):
        return image_digest(f"{source.mode}{source.size}".encode() + source.tobytes())
    return image_digest(bytes(source) if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes())


def judge_key(
    kind: JudgeKind, judge: str, prompt: str, messages: list[tuple[str, str]], generation: GenerationSettings, seed: int,
) -> str:
    """The cache key of one LLM-judge call (`evals.judge`), kept in the same store as the captions: it
    hashes the step (extract or score), the judge's identity, its prompt's `name@version`, the exact
    (role, text) messages sent (the sample's question and the response are in them) and the decoding
    settings (with the seed when sampling)."""
    decoding = {"temperature": generation.temperature, "top_p": generation.top_p, "max_new_tokens": generation.max_new_tokens}
    payload = {"kind": kind, "judge": judge, "prompt": prompt, "messages": messages,
               "decoding": decoding | ({"seed": seed} if generation.temperature > 0 else {})}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
