"""The eval harness with scripted models: caption once for K reasoners, cache, modes, resume, errors
and truncations (not wrong answers), judge against rules, re-captions, reports, merge, and the CLI's
bad-input messages."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from evals.cache import PerceptionCache, image_hash, perception_key
from evals.config import BenchmarkRef, EvalConfig
from evals.console import describe_record, describe_totals
from evals.merge import merge
from evals.run import main
from evals.runner import RunOptions, run_eval
from evals.store import read_records
from evals.tasks import get_benchmark
from rapid_agent.errors import BackendError, ConfigError, InputError
from rapid_agent.models.identity import model_identity
from rapid_agent.models.spec import GenerationSettings
from rapid_agent.prompts import get_preset
from rapid_agent.testing import ScriptedChatModel
from rapid_agent.testing.local_servers import free_port

FIXTURES = Path(__file__).parent / "fixtures" / "evals"
BENCHMARKS = (BenchmarkRef.parse("bundled"), BenchmarkRef.parse(f"mmstar={FIXTURES / 'mmstar'}"))
LIMIT = 4  # bundled questions stay distinct (the scripted captioner keys on them)


def golds() -> dict[str, str]:
    """question → gold of every sample the tests evaluate."""
    samples = get_benchmark("bundled").load(limit=LIMIT) + get_benchmark("mmstar").load(path=FIXTURES / "mmstar")
    return {s.question: s.answer for s in samples}


def human_text(messages) -> str:
    content = messages[-1].content
    return content if isinstance(content, str) else " ".join(p.get("text", "") for p in content if isinstance(p, dict))


def captioner(**kwargs) -> ScriptedChatModel:
    """Captions state the gold as [[answer]]; the tentative answer says it too (for direct mode)."""
    answers = golds()

    def respond(messages) -> str:
        text = human_text(messages)
        gold = next(a for q, a in answers.items() if q in text)
        describing = "describe the image" in messages[0].content
        return f"The figure shows [[{gold}]] clearly." if describing else f"Looking at it, the answer is {gold}."

    return ScriptedChatModel(respond=respond, **kwargs)


def reader(**kwargs) -> ScriptedChatModel:
    """A reasoner that boxes what the caption says, and cannot tell without a caption."""

    def respond(messages) -> str:
        found = re.search(r"\[\[(.+?)\]\]", human_text(messages))
        return f"Reading the caption.\nSo the answer is \\boxed{{{found.group(1)}}}." if found else "I cannot tell.\nNo idea."

    return ScriptedChatModel(respond=respond, **kwargs)


def config(**overrides) -> EvalConfig:
    base = dict(captioner="cap", reasoners=("r1", "r2", "r3"), benchmarks=BENCHMARKS, limit=LIMIT)
    return EvalConfig(**(base | overrides))


def options(tmp_path: Path, name: str = "run", **overrides) -> RunOptions:
    base = dict(output_dir=tmp_path / name, cache_path=tmp_path / "cache.sqlite", progress=False, show=0,
                retry_initial_s=0.001)
    return RunOptions(**(base | overrides))


def models(cap=None, **reasoners):
    return {"cap": cap or captioner(), **{name: reasoners.get(name) or reader() for name in ("r1", "r2", "r3")}}


def summary(folder: Path) -> dict:
    data = json.loads((folder / "summary.json").read_text())
    data.pop("timing")
    return data


N_SAMPLES = LIMIT + 3  # bundled --limit 4, plus the 3 MMStar fixture rows


def test_one_captioning_pass_serves_k_reasoners_and_a_rerun_is_served_from_the_cache(tmp_path):
    m = models()
    result = run_eval(config(), options(tmp_path), models=m)
    # paper-eval preset: a caption and a tentative answer per sample, once, for all three reasoners
    assert len(m["cap"].calls) == 2 * N_SAMPLES == result.captioner_calls
    assert result.caption_calls == result.tentative_calls == N_SAMPLES  # one pass, two outputs per sample
    assert describe_totals(result).startswith(f"captioner calls: {N_SAMPLES} captions + {N_SAMPLES} tentative answers")
    assert all(len(m[r].calls) == N_SAMPLES for r in ("r1", "r2", "r3"))
    runs = result.summary.runs
    assert set(runs) == {"r1 [decoupled]", "r2 [decoupled]", "r3 [decoupled]"}
    assert all(run.benchmarks["bundled"].accuracy.value == 1.0 for run in runs.values())  # the caption reached them
    assert all(run.benchmarks["mmstar"].accuracy.n == 3 for run in runs.values())
    # the tentative answer reached the reasoner too (paper-eval prompt)
    assert "### A tentative model response: Looking at it, the answer is" in human_text(m["r1"].calls[0])
    # MMStar prints its options in the question: they are parsed for grading, never listed a second time
    mmstar_prompt = next(human_text(c) for c in m["r1"].calls if "colour of the square" in human_text(c))
    assert "Options: A: red, B: green" in mmstar_prompt and "A. red" not in mmstar_prompt

    again = models()
    second = run_eval(config(), options(tmp_path, "rerun"), models=again)
    assert len(again["cap"].calls) == 0 and second.captioner_calls == 0
    assert describe_totals(second).startswith(f"captioner calls: 0 (cache hits: {2 * N_SAMPLES})")
    assert second.cache_hits == 2 * N_SAMPLES
    assert summary(tmp_path / "rerun") == summary(tmp_path / "run") | {"config": summary(tmp_path / "rerun")["config"]}
    records = read_records(tmp_path / "rerun" / "samples.jsonl").values()
    assert all(r.perception_cached for r in records)


def test_cache_can_be_disabled_and_keys_on_the_prompt(tmp_path):
    m = models()
    run_eval(config(reasoners=("r1",)), options(tmp_path, cache_path=None), models=m)
    m2 = models()
    run_eval(config(reasoners=("r1",)), options(tmp_path, "again", cache_path=None), models=m2)
    assert len(m["cap"].calls) == len(m2["cap"].calls) == 2 * N_SAMPLES  # nothing stored, nothing reused
    # another preset is another cache key; paper-train needs captions only (no tentative answer)
    m3 = models()
    run_eval(config(reasoners=("r1",), prompt_preset="paper-train"), options(tmp_path, "train"), models=m3)
    assert len(m3["cap"].calls) == N_SAMPLES  # captions only (no tentative answer in paper-train)


def test_direct_and_blind_modes(tmp_path):
    m = models()
    result = run_eval(config(reasoners=("r1",), modes=("decoupled", "direct", "blind")), options(tmp_path), models=m)
    runs = result.summary.runs
    assert set(runs) == {"r1 [decoupled]", "cap [direct]", "r1 [blind]"}
    assert len(m["cap"].calls) == 2 * N_SAMPLES  # direct mode reuses the tentative answers of the same pass
    # direct: the captioner's own answer is graded; blind: the reasoner never sees a caption
    assert runs["cap [direct]"].benchmarks["bundled"].accuracy.value == 1.0
    assert runs["r1 [blind]"].benchmarks["bundled"].accuracy.value == 0.0
    blind_prompts = [human_text(call) for call in m["r1"].calls if "[[" not in human_text(call)]
    assert len(blind_prompts) == N_SAMPLES and all("caption" not in p for p in blind_prompts)
    records = [r for r in read_records(tmp_path / "run" / "samples.jsonl").values() if r.mode == "blind"]
    assert all(r.captions == [] and r.tentative_answer is None and r.perception_usage == [] for r in records)
    direct = next(r for r in read_records(tmp_path / "run" / "samples.jsonl").values() if r.mode == "direct")
    assert direct.output.startswith("Looking at it") and direct.method.startswith("rule:")
    assert [u["node"] for u in direct.perception_usage] == ["tentative"]  # its cost: the answer, not the caption
    comparison = next(
        c for c in result.summary.comparisons if {c.a, c.b} == {"r1 [decoupled]", "r1 [blind]"} and c.benchmark == "bundled"
    )
    assert comparison.difference in (1.0, -1.0) and comparison.p_value == pytest.approx(2 / 2**LIMIT)  # McNemar, 4 vs 0


def test_transient_errors_are_retried_and_persistent_ones_recorded_then_resumed(tmp_path):
    flaky = reader(fail_times=2)  # the first two calls fail with ConnectionError; retries absorb them
    broken = ScriptedChatModel(respond=lambda m: "never", fail_times=10**9)
    m = models(r1=flaky, r2=broken)
    cfg = config(reasoners=("r1", "r2"))
    result = run_eval(cfg, options(tmp_path, retries=2), models=m)
    runs = result.summary.runs
    assert runs["r1 [decoupled]"].benchmarks["bundled"].accuracy.value == 1.0
    failed = runs["r2 [decoupled]"].benchmarks["bundled"]
    # a failed backend is an error, not a wrong answer: accuracy over all samples is 0, and says why
    assert (failed.errors, failed.wrong, failed.correct, failed.error_rate) == (LIMIT, 0, 0, 1.0)
    assert failed.accuracy.value == 0.0 and failed.accuracy_completed.n == 0
    assert result.errors == N_SAMPLES
    assert len(broken.calls) == 3 * N_SAMPLES  # one try and two retries each
    records = [r for r in read_records(tmp_path / "run" / "samples.jsonl").values() if r.run == "r2 [decoupled]"]
    assert len(records) == N_SAMPLES and all(not r.correct and "ConnectionError" in r.error for r in records)
    report = (tmp_path / "run" / "report.md").read_text()
    assert "⚠ 4 errors" in report
    assert "| r2 [decoupled] | bundled | 4 | 0 | 0 | 0 (0.0%) | 4 (100.0%) | 0.0 | — |" in report
    # nothing is left to compare: every pair has an errored side, and the report says so
    pair = next(c for c in result.summary.comparisons if c.benchmark == "bundled")
    assert (pair.n, pair.dropped) == (0, LIMIT)

    fixed = models(r1=reader(), r2=reader())
    resumed = run_eval(cfg, options(tmp_path, resume=True), models=fixed)
    assert len(fixed["r1"].calls) == 0 and len(fixed["r2"].calls) == N_SAMPLES  # only the errored samples again
    assert len(fixed["cap"].calls) == 0 and resumed.errors == 0
    assert resumed.summary.runs["r2 [decoupled]"].benchmarks["bundled"].accuracy.value == 1.0


def test_some_samples_erroring_are_left_out_of_the_paired_comparison(tmp_path):
    questions = [s.question for s in get_benchmark("bundled").load(limit=LIMIT)]

    def fails_on_two(messages) -> str:
        if any(q in human_text(messages) for q in questions[:2]):
            raise RuntimeError("backend fell over")
        return reader().respond(messages)

    m = models(r2=ScriptedChatModel(respond=fails_on_two))
    result = run_eval(config(reasoners=("r1", "r2"), benchmarks=BENCHMARKS[:1]), options(tmp_path, retries=0), models=m)
    r2 = result.summary.runs["r2 [decoupled]"].benchmarks["bundled"]
    assert (r2.samples, r2.correct, r2.wrong, r2.errors) == (LIMIT, 2, 0, 2)
    assert r2.accuracy.value == 0.5 and r2.accuracy_completed.value == 1.0 and r2.accuracy_completed.n == 2
    pair = result.summary.comparisons[0]
    assert (pair.n, pair.dropped, pair.accuracy_a, pair.accuracy_b, pair.difference) == (2, 2, 1.0, 1.0, 0.0)
    report = (tmp_path / "run" / "report.md").read_text()
    assert "| bundled | r1 [decoupled] | r2 [decoupled] | 2 | 2 | 100.0 | 100.0 |" in report
    data = json.loads((tmp_path / "run" / "summary.json").read_text())
    bench = data["runs"]["r2 [decoupled]"]["benchmarks"]["bundled"]
    assert (bench["errors"], bench["error_rate"], bench["truncated"], bench["truncated_rate"]) == (2, 0.5, 0, 0.0)
    assert data["comparisons"][0]["dropped"] == 2


def test_outputs_cut_off_by_the_token_limit_are_truncated_not_wrong(tmp_path):
    questions = [s.question for s in get_benchmark("bundled").load(limit=LIMIT)]

    def respond(messages) -> str:
        text = human_text(messages)
        if questions[0] in text:
            return "<think>Reading the caption, the value could be"  # cut off inside the thinking
        if questions[1] in text:
            answer = re.search(r"\[\[(.+?)\]\]", text).group(1)
            return f"The answer is \\boxed{{{answer}}}.\n<think>Let me double-check the"  # answered, then cut off
        if questions[2] in text:
            return "The answer is \\boxed{-1}."  # finished, and wrong
        return reader().respond(messages)

    result = run_eval(config(reasoners=("r1",), benchmarks=BENCHMARKS[:1]), options(tmp_path),
                      models=models(r1=ScriptedChatModel(respond=respond)))
    bench = result.summary.runs["r1 [decoupled]"].benchmarks["bundled"]
    assert (bench.correct, bench.wrong, bench.truncated, bench.errors) == (1, 1, 2, 0)
    assert bench.truncated_rate == 0.5 and bench.accuracy.value == 0.25 and result.truncated == 2
    records = {r.question: r for r in read_records(tmp_path / "run" / "samples.jsonl").values()}
    cut = records[questions[0]]
    assert cut.truncated and not cut.correct and cut.prediction is None  # never graded from inside the thinking
    assert "✂ truncated" in describe_record(cut)
    reopened = records[questions[1]]  # the graph's answer is None: so is the harness's (the answer contract)
    assert reopened.truncated and not reopened.correct and reopened.prediction is None
    assert not records[questions[2]].truncated
    report = (tmp_path / "run" / "report.md").read_text()
    assert "| r1 [decoupled] | bundled | 4 | 1 | 1 | 2 (50.0%) | 0 (0.0%) | 25.0 | 25.0 |" in report
    assert describe_totals(result).endswith("errors: 0 · truncated: 2")


def test_resume_after_a_torn_write_gives_the_uninterrupted_summary(tmp_path):
    run_eval(config(), options(tmp_path, "full"), models=models())
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(tmp_path / "full" / "config.json", partial / "config.json")
    lines = (tmp_path / "full" / "samples.jsonl").read_text().splitlines(keepends=True)
    (partial / "samples.jsonl").write_text("".join(lines[:7]) + lines[7][:40])  # killed mid-line
    m = models()
    run_eval(config(), options(tmp_path, "partial", resume=True), models=m)
    assert sum(len(m[r].calls) for r in ("r1", "r2", "r3")) == 3 * N_SAMPLES - 7
    assert summary(partial) == summary(tmp_path / "full")
    assert len((partial / "samples.jsonl").read_text().splitlines()) == 3 * N_SAMPLES


def test_an_output_dir_of_another_config_is_refused(tmp_path):
    unreachable = f"openai:m@http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(BackendError, match="unreachable"):  # stopped before any result: the folder may be reused
        run_eval(config(reasoners=(unreachable,)), options(tmp_path), models=models())
    run_eval(config(reasoners=("r1",)), options(tmp_path), models=models())
    with pytest.raises(ConfigError, match="already holds 7 results of this configuration; pass --resume"):
        run_eval(config(reasoners=("r1",)), options(tmp_path), models=models())
    with pytest.raises(ConfigError, match=r"refusing to mix results.*reasoners: \[\"r1\"\] there vs \[\"r1\", \"r2\"\] now"):
        run_eval(config(reasoners=("r1", "r2")), options(tmp_path, resume=True), models=models())
    with pytest.raises(ConfigError, match=r"prompt_preset: \"paper-eval\" there vs \"paper-train\" now"):
        run_eval(config(reasoners=("r1",), prompt_preset="paper-train"), options(tmp_path, resume=True), models=models())


def test_the_judge_reads_answers_the_rules_cannot_and_is_recorded(tmp_path):
    vague = ScriptedChatModel(respond=lambda m: "Hmm, let me think.\nI would go with the gold one, i.e. the second option.")
    judge = ScriptedChatModel(respond=lambda m: "Answer: C" if "colour of the square" in human_text(m) else "Answer: none")
    mapping = models(r1=vague) | {"judge": judge}
    cfg = config(reasoners=("r1",), benchmarks=BENCHMARKS[1:], judge="judge")
    run_eval(cfg, options(tmp_path), models=mapping)
    assert len(judge.calls) == 3
    assert "I would go with the gold one" in human_text(judge.calls[0])
    records = {r.id: r for r in read_records(tmp_path / "run" / "samples.jsonl").values()}
    assert records["0"].correct and records["0"].method.startswith("judge:") and records["0"].judge.output == "Answer: C"
    assert not records["1"].correct and records["1"].judge.answer is None and records["1"].prediction is None


def test_with_a_judge_every_sample_keeps_both_verdicts_and_disagreements_are_reported(tmp_path):
    replies = {  # MMStar fixture: gold C, B, A
        "colour of the square": ("So the answer is A.", "Answer: C"),  # rules read A (wrong); the judge reads C
        "How many dots": ("Hmm, I would go with the second option, I think.", "Answer: B"),  # only the judge reads it
        "left of the cup": ("\\boxed{A}", None),  # the judge fails here
    }

    def pick(messages, which: int) -> str:
        reply = next(r for key, r in replies.items() if key in human_text(messages))[which]
        if reply is None:
            raise ValueError("judge backend broke")
        return reply

    judge = ScriptedChatModel(respond=lambda m: pick(m, 1))
    mapping = models(r1=ScriptedChatModel(respond=lambda m: pick(m, 0))) | {"judge": judge}
    result = run_eval(config(reasoners=("r1",), benchmarks=BENCHMARKS[1:], judge="judge"), options(tmp_path),
                      models=mapping)
    assert len(judge.calls) == 3  # every output, not only those the rules cannot read
    records = {r.id: r for r in read_records(tmp_path / "run" / "samples.jsonl").values()}
    # the rules found an answer: they decide, and the judge's other verdict is recorded beside theirs
    assert not records["0"].correct and records["0"].method.startswith("rule:")
    assert (records["0"].judge.rule_correct, records["0"].judge.correct) == (False, True)
    # no marked answer: the judge decides
    assert records["1"].correct and records["1"].method.startswith("judge:")
    assert (records["1"].judge.rule_correct, records["1"].judge.correct) == (False, True)
    # a failed judge has no verdict, and leaves the rules' one standing
    assert records["2"].correct and records["2"].judge.error and records["2"].judge.correct is None
    agreement = result.summary.runs["r1 [decoupled]"].benchmarks["mmstar"].judge
    assert (agreement.judged, agreement.judge_errors, agreement.disagreements, agreement.changed) == (3, 1, 2, 1)
    assert agreement.disagreeing_ids == ["0", "1"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Judge vs rules" in report and "| r1 [decoupled] | mmstar | 3 | 1 | 2 | 1 | 0, 1 |" in report


def test_recaption_rounds_resend_the_image_with_cached_captions(tmp_path):
    cap = captioner()
    asks = ScriptedChatModel(
        respond=lambda m: "\\boxed{1}" if "Additional description" in human_text(m) else "<recaption>the left bar</recaption>"
    )
    cfg = config(reasoners=("r1",), benchmarks=BENCHMARKS[:1], limit=2, max_recaption_rounds=1)
    run_eval(cfg, options(tmp_path), models=models(cap=cap, r1=asks))
    recaptions = [call for call in cap.calls if "needs more detail: the left bar" in human_text(call)]
    assert len(recaptions) == 2
    assert all(any(p.get("type") == "image_url" for p in call[-1].content) for call in recaptions)
    records = list(read_records(tmp_path / "run" / "samples.jsonl").values())
    assert all(len(r.captions) == 2 and r.prediction == "1" for r in records)


def test_reports_and_merge(tmp_path):
    run_eval(config(reasoners=("r1", "r2")), options(tmp_path, "a"), models=models())
    run_eval(config(reasoners=("r1",), modes=("direct",)), options(tmp_path, "b"), models=models())
    folder = tmp_path / "a"
    report = (folder / "report.md").read_text()
    assert "| run | bundled | mmstar | reasoner tokens/sample (in/out) | captioner tokens/sample (in/out) |" in report
    assert "| r1 [decoupled] | 100.0 [" in report and "(n=4)" in report and "(n=3)" in report
    assert "### mmstar" in report and "category=math" in report and "| McNemar exact |" in report
    assert (folder / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(folder / "accuracy.png").size[0] > 300
    data = json.loads((folder / "summary.json").read_text())
    assert data["runs"]["r1 [decoupled]"]["tokens"]["reasoner_input"] > 0 and data["comparisons"]
    assert data["config"]["reasoners"] == ["r1", "r2"]

    merged = merge([tmp_path / "a", tmp_path / "b"], tmp_path / "merged")
    assert {r.run for r in merged} == {"r1 [decoupled]", "r2 [decoupled]", "cap [direct]"}
    merged_summary = json.loads((tmp_path / "merged" / "summary.json").read_text())
    assert set(merged_summary["runs"]) == {"r1 [decoupled]", "r2 [decoupled]", "cap [direct]"}
    assert any({c["a"], c["b"]} == {"r1 [decoupled]", "cap [direct]"} for c in merged_summary["comparisons"])
    shutil.copytree(tmp_path / "a", tmp_path / "a2")
    twice = merge([tmp_path / "a", tmp_path / "a2"], tmp_path / "twice")
    assert {r.run for r in twice} == {"r1 [decoupled] (a)", "r2 [decoupled] (a)", "r1 [decoupled] (a2)", "r2 [decoupled] (a2)"}
    with pytest.raises(InputError, match="listed twice"):
        merge([tmp_path / "a", tmp_path / "a"], tmp_path / "same")


def test_perception_cache_keys_and_model_identity(tmp_path):
    preset = get_preset("paper-eval")
    gen = GenerationSettings()
    image = Image.new("RGB", (8, 8), "red")
    base = dict(kind="caption", captioner="cap", preset=preset, image_hashes=[image_hash(image)], question="Q?",
                options=["1", "2"], generation=gen, seed=0)
    key = perception_key(**base)
    changed = [
        dict(kind="tentative"), dict(captioner="other"), dict(preset=get_preset("blind").model_copy(update={"caption_user": "x {question}"})),
        dict(image_hashes=[image_hash(Image.new("RGB", (8, 8), "blue"))]), dict(question="Q2?"), dict(options=["1", "3"]),
        dict(generation=GenerationSettings(max_new_tokens=7)), dict(generation=GenerationSettings(temperature=0.5)),
    ]
    assert all(perception_key(**(base | change)) != key for change in changed)
    assert perception_key(**(base | dict(preset=get_preset("paper-train")))) != key  # the preset key is part of it
    # a different timeout or batch size, or another seed at temperature 0, do not change a caption
    assert perception_key(**(base | dict(generation=GenerationSettings(timeout_s=5, max_batch_size=2), seed=9))) == key

    cache = PerceptionCache(tmp_path / "c.sqlite")
    from evals.cache import Entry

    cache.put(key, "caption", "cap", preset.key, Entry(text="a caption", usage={"node": "caption"}))
    cache.close()
    reopened = PerceptionCache(tmp_path / "c.sqlite")
    assert reopened.get(key).text == "a caption" and reopened.get("nope") is None
    assert (reopened.hits, reopened.misses) == (1, 1) and len(reopened) == 1

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "Qwen/Qwen2.5-VL-3B-Instruct"}))
    (adapter / "adapter_model.safetensors").write_bytes(b"\x00" * 2_500_000)
    first = model_identity(f"hf:{adapter}")
    assert "base=hf:Qwen/Qwen2.5-VL-3B-Instruct" in first
    (adapter / "adapter_model.safetensors").write_bytes(b"\x01" + b"\x00" * 2_499_999)  # retrained in place
    assert model_identity(f"hf:{adapter}") != first
    # a served model is its name at its server: two servers may serve other weights under one name
    assert model_identity("openai:my-model@http://127.0.0.1:1/v1") != model_identity("openai:my-model@http://127.0.0.1:2/v1")


def test_cli_bad_input_gets_clear_messages(tmp_path, capsys):
    out = ["--output-dir", str(tmp_path / "o"), "--cache", str(tmp_path / "c.sqlite"), "--no-progress"]
    tiny = ["--captioner", "tiny", "--reasoner", "tiny"]
    assert main([*tiny, "--benchmark", "nope", *out]) == 2
    assert "error: unknown benchmark 'nope'; known benchmarks:" in capsys.readouterr().err
    assert main([*tiny, "--benchmark", "mathvista:test", *out]) == 2
    assert "unknown split 'test' for benchmark 'mathvista'" in capsys.readouterr().err
    assert main(["--prompt", "fancy", *out]) == 2
    assert "unknown prompt preset 'fancy'" in capsys.readouterr().err
    assert main(["--limit", "0", *out]) == 2
    assert "error: invalid settings: limit:" in capsys.readouterr().err
    url = f"http://127.0.0.1:{free_port()}/v1"
    assert main(["--captioner", "tiny", "--reasoner", f"openai:some-model@{url}", "--benchmark", "bundled", "--limit", "2",
                 *out]) == 2
    err = capsys.readouterr().err
    assert f"error: reasoner: the server at {url} is unreachable" in err and "start it" in err
    assert main(["--list-benchmarks"]) == 0
    assert "dynamath" in capsys.readouterr().out


def test_shipped_miniworld_models_are_identified_by_their_files_not_their_name():
    from rapid_agent.miniworld import model_path

    assert model_identity("miniworld:captioner") == model_identity(f"hf:{model_path('captioner')}")
    assert model_identity("miniworld:captioner") != model_identity("miniworld:captioner-sft")


def voter(pattern: str) -> ScriptedChatModel:
    """A reasoner whose i-th answer to a question is right where `pattern[i]` is 'r', wrong where 'w'."""
    answers, seen = golds(), {}

    def respond(messages) -> str:
        text = human_text(messages)
        question = next(q for q in answers if q in text)
        i = seen[question] = seen.get(question, -1) + 1
        return f"\\boxed{{{answers[question] if pattern[i % len(pattern)] == 'r' else 'zzz'}}}"

    return ScriptedChatModel(respond=respond)


@pytest.mark.parametrize(
    ("pattern", "k", "vote_at_k", "pass_at_k", "ties"),
    [("rrw", 3, 1.0, 1.0, 0), ("rww", 3, 0.0, 1.0, 0), ("rw", 2, 0.0, 1.0, LIMIT), ("www", 3, 0.0, 0.0, 0)],
    ids=["majority-right", "majority-wrong", "tie", "all-wrong"],
)
def test_votes_grade_the_majority_and_report_vote_and_pass_at_k(tmp_path, pattern, k, vote_at_k, pass_at_k, ties):
    m = models(r1=voter(pattern))
    result = run_eval(config(reasoners=("r1",), reasoner_samples=k, benchmarks=BENCHMARKS[:1]), options(tmp_path), models=m)
    assert len(m["r1"].calls) == k * LIMIT
    scores = result.summary.runs["r1 [decoupled]"].benchmarks["bundled"].votes
    assert (scores.k, scores.vote_at_k.value, scores.pass_at_k.value, scores.ties) == (k, vote_at_k, pass_at_k, ties)
    assert scores.sample_accuracy == pytest.approx(pattern.count("r") / len(pattern))
    record = next(iter(read_records(tmp_path / "run" / "samples.jsonl").values()))
    assert len(record.votes.outputs) == k and record.votes.outcome == ("tie" if ties else "majority")
    assert record.correct == (vote_at_k == 1.0) and sum(1 for u in record.usage if u["node"] == "reason") == k
    assert "## Votes (k reasoner samples per question)" in (tmp_path / "run" / "report.md").read_text()


def test_one_sample_runs_keep_their_digest_and_report_no_votes(tmp_path):
    assert config().digest() == config(reasoner_samples=1).digest() != config(reasoner_samples=3).digest()
    result = run_eval(config(reasoners=("r1",), benchmarks=BENCHMARKS[:1]), options(tmp_path), models=models())
    assert result.summary.runs["r1 [decoupled]"].benchmarks["bundled"].votes is None


def second_captioner() -> ScriptedChatModel:
    return ScriptedChatModel(respond=lambda messages: "A second look: the shapes are small.")


def test_a_captioner_list_is_one_configuration_cached_per_captioner(tmp_path):
    fused = config(captioner=("cap", "cap2"), reasoners=("r1",), benchmarks=BENCHMARKS[:1], prompt_preset="paper-train")
    m = models() | {"cap2": second_captioner()}
    result = run_eval(fused, options(tmp_path), models=m)
    assert len(m["cap"].calls) == len(m["cap2"].calls) == LIMIT and result.caption_calls == 2 * LIMIT
    prompt = human_text(m["r1"].calls[0])
    assert "Description 1 of 2: The figure shows [[" in prompt and "Description 2 of 2: A second look" in prompt
    record = next(iter(read_records(tmp_path / "run" / "samples.jsonl").values()))
    assert record.captioner == "cap,cap2" and len(record.captions) == 2
    assert result.summary.runs["r1 [decoupled]"].benchmarks["bundled"].accuracy.value == 1.0
    # each captioner's captions are cached under its own identity: the single captioner reuses them
    alone = models()
    run_eval(config(reasoners=("r1",), benchmarks=BENCHMARKS[:1], prompt_preset="paper-train"), options(tmp_path, "alone"),
             models=alone)
    assert alone["cap"].calls == []
    assert fused.digest() != config(captioner=("cap2", "cap"), reasoners=("r1",), benchmarks=BENCHMARKS[:1],
                                    prompt_preset="paper-train").digest()  # the list, in order, is the identity
    for bad, message in [(dict(captioner=("cap", "cap")), "two or more distinct"),
                         (dict(captioner=("cap", "cap2"), modes=("direct",)), "direct mode answers with one MLLM")]:
        with pytest.raises(ValueError, match=message):
            config(**bad)


def test_cli_reads_captioner_lists_and_samples():
    from evals.run import configs_from_args, parser

    args = parser().parse_args(["--captioner", "tiny, hf:a/b", "--captioner", "tiny", "--reasoner", "tiny",
                                "--benchmark", "bundled", "--reasoner-samples", "5"])
    fused, single = configs_from_args(args)
    assert fused.captioner == ("tiny", "hf:a/b") and single.captioner == "tiny"
    assert fused.reasoner_samples == single.reasoner_samples == 5
