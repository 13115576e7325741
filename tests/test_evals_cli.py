"""`python -m evals.run` end to end with the tiny models, a real local OpenAI-compatible server, and a
real SIGKILL followed by `--resume`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evals.run import MAIN_JOB_NOTICE, configs_from_args, main, parser
from rapid_agent.models.hf import HFVisionChatModel

FIXTURES = Path(__file__).parent / "fixtures" / "evals"
REPORT_FILES = ("config.json", "samples.jsonl", "summary.json", "report.md", "accuracy.png")

pytestmark = pytest.mark.slow


@pytest.fixture
def tiny_env(tiny_models, monkeypatch):
    """Make the `tiny` spec resolve to the session's tiny models (no second build)."""
    root = str(Path(tiny_models[0]).parent)
    monkeypatch.setenv("RAPID_TINY_MODELS_DIR", root)
    return os.environ | {"RAPID_TINY_MODELS_DIR": root, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture
def captioner_calls(monkeypatch):
    """Counts every captioner generation (each item of each micro-batch of the local vision model)."""
    counted = {"items": 0}
    original = HFVisionChatModel._generate_batch

    def counting(self, items):
        counted["items"] += len(items)
        return original(self, items)

    monkeypatch.setattr(HFVisionChatModel, "_generate_batch", counting)
    return counted


def summary_without_timing(folder: Path) -> dict:
    data = json.loads((folder / "summary.json").read_text())
    data.pop("timing")
    return data


def test_two_reasoners_local_and_served_over_two_fixture_benchmarks(tiny_env, reasoner_server, captioner_calls, tmp_path, capsys):
    common = [
        "--captioner", "tiny", "--reasoner", "tiny", "--reasoner", reasoner_server.spec,
        "--benchmark", f"mmstar={FIXTURES / 'mmstar'}", "--benchmark", f"mathvista={FIXTURES / 'mathvista'}",
        "--max-new-tokens", "12", "--caption-max-new-tokens", "12", "--cache", str(tmp_path / "cache.sqlite"),
        "--concurrency", "4", "--no-progress",
    ]
    assert main([*common, "--output-dir", str(tmp_path / "first")]) == 0
    samples = 3 + 4  # MMStar and MathVista fixture rows
    assert captioner_calls["items"] == 2 * samples  # one caption + one tentative answer per sample, for both reasoners
    out = capsys.readouterr().out
    assert "caption  :" in out and "question :" in out and "| run | mathvista | mmstar |" in out
    for name in REPORT_FILES:
        assert (tmp_path / "first" / name).is_file(), name
    summary = json.loads((tmp_path / "first" / "summary.json").read_text())
    served = f"reasoner@127.0.0.1:{reasoner_server.port} [decoupled]"
    assert set(summary["runs"]) == {"tiny [decoupled]", served}
    for run in summary["runs"].values():
        assert {b: r["accuracy"]["n"] for b, r in run["benchmarks"].items()} == {"mmstar": 3, "mathvista": 4}
        assert all(r["errors"] == 0 for r in run["benchmarks"].values())
    records = [json.loads(line) for line in (tmp_path / "first" / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 2 * samples and all(r["error"] is None for r in records)
    assert all(u["output_tokens"] > 0 for r in records if r["run"] == served for u in r["usage"])

    captioner_calls["items"] = 0
    assert main([*common, "--output-dir", str(tmp_path / "second")]) == 0
    assert captioner_calls["items"] == 0  # every caption and tentative answer came from the cache
    assert "captioner calls: 0 (cache hits: 14)" in capsys.readouterr().out
    second = [json.loads(line) for line in (tmp_path / "second" / "samples.jsonl").read_text().splitlines()]
    assert all(r["perception_cached"] for r in second)
    first_captions = {(r["run"], r["benchmark"], r["id"]): r["captions"] for r in records}
    assert all(first_captions[(r["run"], r["benchmark"], r["id"])] == r["captions"] for r in second)


def test_sigkill_then_resume_gives_the_uninterrupted_summary(tiny_env, tiny_reasoner_path, tmp_path, capsys):
    # deterministic decoding: one request at a time (no padded batches) and captions only (paper-train)
    args = [
        "--limit", "10", "--prompt", "paper-train", "--concurrency", "1", "--captioner", "tiny", "--benchmark", "bundled",
        "--reasoner", "tiny", "--reasoner", f"hf:{tiny_reasoner_path}", "--max-new-tokens", "48", "--no-progress",
    ]
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "evals.run", *args, "--output-dir", str(killed), "--cache", str(tmp_path / "a.sqlite")],
        env=tiny_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=Path(__file__).parents[1],
    )
    samples = killed / "samples.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if samples.is_file() and samples.read_text().count("\n") >= 3:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    done = samples.read_text().count("\n")
    assert 3 <= done < 20, done  # killed midway through the 2 x 10 samples

    assert main([*args, "--output-dir", str(killed), "--cache", str(tmp_path / "a.sqlite")]) == 2  # refuses to mix
    assert "pass --resume" in capsys.readouterr().err
    assert main([*args, "--output-dir", str(killed), "--cache", str(tmp_path / "a.sqlite"), "--resume"]) == 0
    assert f"new results: {20 - done}" in capsys.readouterr().out
    assert main([*args, "--output-dir", str(tmp_path / "straight"), "--cache", str(tmp_path / "b.sqlite")]) == 0
    assert summary_without_timing(killed) == summary_without_timing(tmp_path / "straight")
    assert len(samples.read_text().splitlines()) == 20


def test_captioners_compared_side_by_side_in_one_report(tmp_path, capsys):
    """Two captioners (before and after VPO): one sub-folder each, merged into one paired report; blind runs once."""
    out = tmp_path / "compare"
    argv = [
        "--captioner", "miniworld:captioner", "--captioner", "miniworld:captioner-sft",
        "--reasoner", "miniworld:reasoner-small", "--benchmark", "miniworld", "--limit", "5", "--prompt", "paper-train",
        "--mode", "decoupled", "--mode", "blind", "--no-cache", "--no-progress", "--show", "1", "--output-dir", str(out),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "captioner miniworld:captioner-sft" in printed and "caption  :" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["runs"]) == {
        "miniworld:reasoner-small [decoupled] (captioner)", "miniworld:reasoner-small [decoupled] (captioner-sft)",
        "miniworld:reasoner-small [blind]",
    }
    assert all(run["benchmarks"]["miniworld"]["samples"] == 5 for run in summary["runs"].values())
    assert {c["a"] for c in summary["comparisons"]} | {c["b"] for c in summary["comparisons"]} == set(summary["runs"])
    for folder, runs in (("captioner", 2), ("captioner-sft", 1)):
        records = [json.loads(line) for line in (out / folder / "samples.jsonl").read_text().splitlines()]
        assert len(records) == 5 * runs and all(r["error"] is None for r in records)

    assert main([*argv, "--resume"]) == 0  # every sample is already done: nothing runs again, same report
    assert json.loads((out / "summary.json").read_text())["runs"].keys() == summary["runs"].keys()
    assert len((out / "samples.jsonl").read_text().splitlines()) == 15


def test_blind_alone_cannot_compare_captioners(capsys):
    argv = ["--captioner", "tiny", "--captioner", "hf:x", "--reasoner", "tiny", "--benchmark", "bundled", "--mode", "blind",
            "--no-progress"]
    assert main(argv) == 2
    assert "blind runs read no caption" in capsys.readouterr().err


def test_no_model_flags_run_the_main_job_and_say_so(tmp_path, capsys):
    first, second = configs_from_args(parser().parse_args([]))
    assert (first.captioner, second.captioner) == ("miniworld:captioner", "miniworld:captioner-sft")
    assert first.reasoners == second.reasoners == ("miniworld:reasoner-small", "miniworld:reasoner-large")
    assert [b.label for b in first.benchmarks] == ["miniworld"] and first.limit == 40
    assert first.prompt_preset == "paper-train"
    assert first.modes == ("decoupled", "direct", "blind") and second.modes == ("decoupled", "direct")  # blind once
    config, = configs_from_args(parser().parse_args(["--captioner", "tiny", "--reasoner", "tiny", "--benchmark", "bundled"]))
    assert (config.limit, config.modes, config.prompt_preset) == (None, ("decoupled",), "paper-eval")
    shorter, _ = configs_from_args(parser().parse_args(["--limit", "5", "--mode", "decoupled", "--prompt", "paper-eval"]))
    assert (shorter.limit, shorter.modes, shorter.prompt_preset) == (5, ("decoupled",), "paper-eval")  # given flags win

    assert main(["--limit", "0", "--output-dir", str(tmp_path / "o"), "--no-progress"]) == 2  # stops before any model
    out = capsys.readouterr().out
    assert MAIN_JOB_NOTICE in out and "--captioner tiny --reasoner tiny --benchmark bundled" in out
    assert main(["--reasoner", "tiny", "--output-dir", str(tmp_path / "o"), "--no-progress"]) == 2
    printed = capsys.readouterr()
    assert MAIN_JOB_NOTICE not in printed.out
    assert "error: --captioner and --benchmark missing: name --captioner, --reasoner and --benchmark together" in printed.err
