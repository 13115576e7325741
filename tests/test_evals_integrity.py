"""Eval output folders are never mixed or duplicated: one run at a time holds a folder (real processes),
every record carries its configuration's digest, another configuration is refused, torn tails of any bytes
are dropped, and storage failures (disk full, read-only folder, corrupt or foreign cache) end with one clear
line and exit code 2, after which `--resume` gives the summary of an uninterrupted run."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import ConfigDict, Field

from evals.config import EvalConfig
from evals.lock import LOCK_FILE, FolderBusyError
from evals.merge import merge
from evals.report import summarize
from evals.run import main
from evals.store import SAMPLES_FILE, RunStore, SampleRecord, config_digest, read_records
from rapid_agent.errors import ConfigError, InputError
from rapid_agent.testing import ScriptedChatModel
from rapid_agent.testing.openai_server import ScriptedOpenAIServer

ROOT = Path(__file__).parents[1]
LIMIT = 4  # bundled samples, one record each (one reasoner, decoupled)
HANG_GUARD_S = 120  # only a bound on waiting for a process; no assertion depends on it
CAPTION = "图中有四根柱子，标签为 A、B、C、D。"  # multi-byte UTF-8 in every record


class GatedModel(ScriptedChatModel):
    """A scripted model that holds each request until `gate` is open: the test decides when a run may go on."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    gate: threading.Event = Field(default_factory=threading.Event)

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        await asyncio.to_thread(self.gate.wait, HANG_GUARD_S)
        return await super()._agenerate(messages, stop, run_manager, **kwargs)


@pytest.fixture(scope="module")
def servers():
    """A scripted captioner and a gated scripted reasoner behind real OpenAI-compatible HTTP servers."""
    reasoner = GatedModel(respond=lambda messages: "The tallest is the first.\n\\boxed{10}")
    reasoner.gate.set()
    captioner = ScriptedChatModel(respond=lambda messages: CAPTION)
    with ScriptedOpenAIServer(captioner, model_name="cap") as cap, ScriptedOpenAIServer(reasoner, model_name="r") as rs:
        yield SimpleNamespace(captioner=cap, reasoner=rs, gate=reasoner.gate)


def cli(servers, folder: Path, *extra: str, cache: Path | None = None) -> list[str]:
    return [
        "--captioner", servers.captioner.spec, "--reasoner", servers.reasoner.spec, "--benchmark", "bundled",
        "--limit", str(LIMIT),
        "--concurrency", "2", "--retries", "0", "--no-progress", "--output-dir", str(folder),
        *(["--cache", str(cache)] if cache else ["--no-cache"]), *extra,
    ]


def summary(folder: Path) -> dict:
    data = json.loads((folder / "summary.json").read_text())
    data.pop("timing")
    return data


def error_line(err: str) -> str:
    """The one line a refused or failed run prints: no traceback, nothing else."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def stored_lines(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / SAMPLES_FILE).read_bytes().decode().splitlines()]


@pytest.fixture(scope="module")
def straight(servers, tmp_path_factory) -> Path:
    """An uninterrupted run: the summary every interrupted-then-resumed run must reproduce."""
    folder = tmp_path_factory.mktemp("straight") / "run"
    assert main(cli(servers, folder)) == 0
    return folder


def partial_copy(straight: Path, folder: Path, keep: int) -> Path:
    """A copy of the uninterrupted run's folder whose run stopped after `keep` results."""
    folder.mkdir()
    shutil.copy(straight / "config.json", folder / "config.json")
    lines = (straight / SAMPLES_FILE).read_bytes().splitlines(keepends=True)
    (folder / SAMPLES_FILE).write_bytes(b"".join(lines[:keep]))
    return folder


def start(servers, folder: Path, *extra: str) -> subprocess.Popen:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(
        [sys.executable, "-m", "evals.run", *cli(servers, folder, *extra)], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_until_working(process: subprocess.Popen, servers) -> None:
    """Until `process` holds its folder: its first reasoner request has reached the (closed) gate."""
    deadline = time.monotonic() + HANG_GUARD_S
    while servers.reasoner.requests == 0:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the first run never reached its reasoner"
        time.sleep(0.05)


def run_cli(servers, folder: Path, *extra: str) -> subprocess.CompletedProcess:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(
        [sys.executable, "-m", "evals.run", *cli(servers, folder, *extra)], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=HANG_GUARD_S,
    )


# --------------------------------------------------------------------------- concurrent runs (real processes)


@pytest.mark.slow  # spawns eval processes
def test_a_second_run_or_resume_on_a_held_folder_is_refused_naming_the_holder(servers, straight, tmp_path, capsys):
    folder = tmp_path / "run"
    servers.reasoner.requests = 0
    servers.gate.clear()
    first = start(servers, folder)
    try:
        wait_until_working(first, servers)
        for extra in ((), ("--resume",)):  # the same command again, and a resume while the first still runs
            second = run_cli(servers, folder, *extra)
            assert second.returncode == 2
            line = error_line(second.stderr)
            assert f"is in use by another eval run (pid {first.pid} on " in line
            assert "wait for it to finish or stop it, then continue with --resume" in line and "--output-dir" in line
        assert first.poll() is None  # the holder was not disturbed
    finally:
        servers.gate.set()
    out, err = first.communicate(timeout=HANG_GUARD_S)
    assert first.returncode == 0, err
    records = stored_lines(folder)
    assert len(records) == LIMIT == len({(r["run"], r["benchmark"], r["id"]) for r in records})  # no duplicates
    assert summary(folder) == summary(straight)

    # another configuration into the used folder: refused, naming the setting that differs
    config_before = (folder / "config.json").read_bytes()
    assert main(cli(servers, folder, "--prompt", "paper-train", "--resume")) == 2
    line = error_line(capsys.readouterr().err)
    assert 'prompt_preset: "paper-eval" there vs "paper-train" now' in line and "choose another --output-dir" in line
    assert (folder / "config.json").read_bytes() == config_before and len(stored_lines(folder)) == LIMIT


@pytest.mark.slow  # spawns an eval process
def test_the_lock_of_a_killed_run_is_taken_over_and_resume_completes_it(servers, straight, tmp_path, capsys):
    folder = tmp_path / "run"
    servers.reasoner.requests = 0
    servers.gate.clear()
    first = start(servers, folder)
    try:
        wait_until_working(first, servers)
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=HANG_GUARD_S) == -signal.SIGKILL
    finally:
        servers.gate.set()
    assert json.loads((folder / LOCK_FILE).read_text())["pid"] == first.pid  # what the dead holder left
    assert main(cli(servers, folder, "--resume")) == 0
    assert json.loads((folder / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert summary(folder) == summary(straight) and len(stored_lines(folder)) == LIMIT


def test_one_process_cannot_open_a_folder_twice_and_a_closed_store_frees_it(tmp_path):
    config = EvalConfig().identity()
    with RunStore.open(tmp_path / "run", config, resume=False):
        with pytest.raises(FolderBusyError, match=rf"in use by another eval run \(pid {os.getpid()} on "):
            RunStore.open(tmp_path / "run", config, resume=True)
    with RunStore.open(tmp_path / "run", config, resume=True):
        pass



def test_merge_never_writes_into_a_folder_a_run_holds_or_one_of_its_inputs(servers, straight, tmp_path):
    config = EvalConfig().identity()
    with RunStore.open(tmp_path / "held", config, resume=False):
        with pytest.raises(FolderBusyError, match="in use by another eval run"):
            merge([straight], tmp_path / "held")
    with pytest.raises(InputError, match="is one of the run folders"):
        merge([straight], straight)
    assert not (tmp_path / "held" / "samples.jsonl").exists()
    assert merge([straight], tmp_path / "merged")  # the lock is released: the next merge goes through

# --------------------------------------------------------------------------- digests and configurations


def record(sample_id: str, **update) -> SampleRecord:
    return SampleRecord(run="r [decoupled]", mode="decoupled", captioner="c", reasoner="r", benchmark="bundled",
                        id=sample_id, question="q", gold=["1"], captions=[CAPTION], **update)


def test_every_record_carries_the_configuration_digest_and_a_folder_never_mixes_digests(servers, straight, tmp_path):
    digest = config_digest(json.loads((straight / "config.json").read_text()))
    assert {r["config_digest"] for r in stored_lines(straight)} == {digest}

    config = EvalConfig().identity()
    with RunStore.open(tmp_path / "run", config, resume=False) as store:
        store.append(record("1"))
        store.append(record("2", config_digest="ffffffffff"))  # the store stamps its own digest
        assert [r.config_digest for r in store.records()] == [EvalConfig().digest()] * 2
    # a line of another configuration (e.g. appended by hand from another folder) is refused, never mixed in
    other = record("3", config_digest="0123456789").model_dump_json() + "\n"
    with (tmp_path / "run" / SAMPLES_FILE).open("a") as handle:
        handle.write(other)
    with pytest.raises(ConfigError, match=r"holds 1 records of another configuration \(digest 0123456789"):
        RunStore.open(tmp_path / "run", config, resume=True)
    # and so is a folder holding another configuration
    with pytest.raises(ConfigError, match=r"limit: null there vs 3 now.*choose another --output-dir"):
        RunStore.open(tmp_path / "run", EvalConfig(limit=3).identity(), resume=True)


def test_a_report_never_mixes_configurations_in_one_row(tmp_path):
    mixed = [record("1", config_digest="aaaaaaaaaa"), record("2", config_digest="bbbbbbbbbb")]
    with pytest.raises(InputError, match=r"refusing to report 'r \[decoupled\]': its records come from 2 config"):
        summarize(mixed)
    for folder, digest in (("a", "aaaaaaaaaa"), ("b", "bbbbbbbbbb")):  # merged folders: one row per configuration
        (tmp_path / folder).mkdir()
        (tmp_path / folder / SAMPLES_FILE).write_text(record("1", config_digest=digest).model_dump_json() + "\n")
    assert {r.run for r in merge([tmp_path / "a", tmp_path / "b"], tmp_path / "merged")} == {
        "r [decoupled] (a)", "r [decoupled] (b)"
    }
    (tmp_path / "a" / SAMPLES_FILE).write_text("".join(r.model_dump_json() + "\n" for r in mixed))
    with pytest.raises(InputError, match="come from 2 configurations"):
        merge([tmp_path / "a"], tmp_path / "merged-mixed")


# --------------------------------------------------------------------------- torn tails


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param(None, id="cut-inside-a-multibyte-character"),
        pytest.param(b'{"run": "r [decoupled]", "mo', id="cut-mid-line"),
        pytest.param(b"\xff\xfe\x00garbage", id="undecodable-bytes"),
        pytest.param(b"\x00" * 4096, id="zero-filled-block"),
        pytest.param(b"not json at all\n", id="unparseable-complete-line"),
        pytest.param(b"\xe5\x9b\xbe\n", id="undecodable-complete-line"),
    ],
)
def test_a_torn_last_line_of_any_bytes_is_dropped_on_resume(tmp_path, tail, caplog):
    config = EvalConfig().identity()
    with RunStore.open(tmp_path / "run", config, resume=False) as store:
        for i in range(3):
            store.append(record(str(i)))
    path = tmp_path / "run" / SAMPLES_FILE
    intact = path.read_bytes()
    if tail is None:  # the next record cut one byte into its first multi-byte character
        line = (record("3").model_dump_json() + "\n").encode()
        tail = line[: next(i for i, b in enumerate(line) if b >= 0x80) + 1]
        with pytest.raises(UnicodeDecodeError):
            tail.decode()
    path.write_bytes(intact + tail)

    assert [r.id for r in read_records(path).values()] == ["0", "1", "2"]
    assert "dropping a torn last line" in caplog.text
    with RunStore.open(tmp_path / "run", config, resume=True) as store:
        assert path.read_bytes() == intact  # cut back to the last whole record
        store.append(record("3"))
    assert [r.id for r in read_records(path).values()] == ["0", "1", "2", "3"]


def test_a_bad_line_before_the_last_is_an_error_not_silently_dropped(tmp_path):
    path = tmp_path / SAMPLES_FILE
    path.write_bytes(b"\xe5\x9b\n" + (record("1").model_dump_json() + "\n").encode())
    with pytest.raises(InputError, match=r"samples.jsonl:1: not a sample record"):
        read_records(path)


# --------------------------------------------------------------------------- storage failures


def test_disk_full_mid_run_is_one_line_and_resume_gives_the_uninterrupted_summary(
    servers, straight, tmp_path, monkeypatch, capsys
):
    real_write = os.write
    written = {"records": 0}

    def full_disk(fd, data):
        if bytes(data[:7]) == b'{"run":':
            if written["records"] == 2:  # the third record: cut inside a multi-byte character, then ENOSPC
                data = bytes(data)
                real_write(fd, data[: data.index(CAPTION[0].encode()) + 1])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written["records"] += 1
        return real_write(fd, data)

    folder = tmp_path / "run"
    monkeypatch.setattr(os, "write", full_disk)
    assert main(cli(servers, folder)) == 2
    line = error_line(capsys.readouterr().err)
    assert "samples.jsonl: No space left on device" in line and "free some space, then continue with --resume" in line
    monkeypatch.undo()
    data = (folder / SAMPLES_FILE).read_bytes()
    assert data.count(b"\n") == 2 and not data.endswith(b"\n")  # two results and a torn third

    assert main(cli(servers, folder, "--resume")) == 0
    assert "new results: 2" in capsys.readouterr().out
    assert summary(folder) == summary(straight) and len(stored_lines(folder)) == LIMIT


def test_disk_full_while_writing_reports_is_one_line_and_resume_writes_them(
    servers, straight, tmp_path, monkeypatch, capsys
):
    real_write_text = Path.write_text

    def full_disk(self, *args, **kwargs):
        if self.name == "summary.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real_write_text(self, *args, **kwargs)

    folder = tmp_path / "run"
    monkeypatch.setattr(Path, "write_text", full_disk)
    assert main(cli(servers, folder)) == 2
    line = error_line(capsys.readouterr().err)
    assert "summary.json: No space left on device" in line and "continue with --resume" in line
    monkeypatch.undo()
    assert len(stored_lines(folder)) == LIMIT and not (folder / "summary.json").exists()
    assert main(cli(servers, folder, "--resume")) == 0
    assert "new results: 0" in capsys.readouterr().out
    assert summary(folder) == summary(straight)


def test_a_read_only_folder_is_one_line_and_resume_gives_the_uninterrupted_summary(
    servers, straight, tmp_path, monkeypatch, capsys
):
    folder = partial_copy(straight, tmp_path / "run", keep=2)
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):  # as a read-only mount answers (root ignores chmod)
        if Path(os.fsdecode(path)).parent == folder and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    assert main(cli(servers, folder, "--resume")) == 2
    line = error_line(capsys.readouterr().err)
    assert f"{folder / LOCK_FILE}: Read-only file system" in line and "--output-dir" in line
    monkeypatch.undo()
    assert main(cli(servers, folder, "--resume")) == 0
    assert summary(folder) == summary(straight) and len(stored_lines(folder)) == LIMIT


def _not_a_database(path: Path) -> None:
    path.write_bytes(b"these bytes are not SQLite " * 100)


def _foreign_schema(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE perception (key TEXT PRIMARY KEY, value TEXT)")


def _another_application(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE users (name TEXT)")


def _corrupt_pages(path: Path) -> None:
    """A real cache whose pages after the header page are overwritten (a torn disk write)."""
    from evals.cache import Entry, PerceptionCache

    cache = PerceptionCache(path)
    for i in range(200):
        cache.put(f"key{i}", "caption", "cap", "paper-eval", Entry(text=CAPTION * 20, usage={}))
    cache.close()
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page:] = b"\xa5" * (len(data) - page)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("spoil", [_not_a_database, _foreign_schema, _another_application, _corrupt_pages])
def test_a_corrupt_or_foreign_cache_is_one_line_and_resume_gives_the_uninterrupted_summary(
    servers, straight, tmp_path, capsys, spoil
):
    cache = tmp_path / "cache.sqlite"
    spoil(cache)
    before = cache.read_bytes()
    folder = partial_copy(straight, tmp_path / "run", keep=1)
    assert main(cli(servers, folder, "--resume", cache=cache)) == 2
    line = error_line(capsys.readouterr().err)
    assert f"the caption cache '{cache}'" in line and "--no-cache" in line
    assert cache.read_bytes() == before  # someone else's database is left as it was
    assert main(cli(servers, folder, "--resume", cache=tmp_path / "fresh.sqlite")) == 0
    assert summary(folder) == summary(straight) and len(stored_lines(folder)) == LIMIT


def test_a_cache_of_the_previous_layout_is_adopted(tmp_path):
    from evals.cache import _SCHEMA, Entry, PerceptionCache

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:  # what earlier versions wrote: the table, no application id
        db.execute(_SCHEMA)
        db.execute("INSERT INTO perception VALUES ('k', 'caption', 'cap', 'paper-eval', 'old caption', '{}', 0)")
    cache = PerceptionCache(path)
    assert cache.get("k") == Entry(text="old caption", usage={})
    cache.close()


def test_a_folder_of_a_model_retrained_under_the_same_spec_is_refused(tiny_captioner_path, tmp_path):
    weights = tmp_path / "captioner"
    shutil.copytree(tiny_captioner_path, weights)
    config = EvalConfig(captioner=f"hf:{weights}").identity()
    with RunStore.open(tmp_path / "run", config, resume=False) as store:
        store.append(record("1"))
    with RunStore.open(tmp_path / "run", EvalConfig(captioner=f"hf:{weights}").identity(), resume=True) as store:
        assert len(store.records()) == 1  # the same weights: resumed
    (weights / "generation_config.json").write_text('{"retrained": true}')  # the same spec, other files
    with pytest.raises(ConfigError, match=r"weights"):
        RunStore.open(tmp_path / "run", EvalConfig(captioner=f"hf:{weights}").identity(), resume=True)
