"""The miniature world: scenes, exact answers, text targets, prompts as the graph sends them, loader and specs."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from PIL import Image

from rapid_agent import build_rapid_graph
from rapid_agent.answers import extract_answer, grade
from rapid_agent.errors import ConfigError
from rapid_agent.miniworld import MODELS, model_path, world
from rapid_agent.testing import ScriptedChatModel
from training.miniworld import sft


def _solve(task: world.Task, values: dict[str, int]) -> str:
    """The answer computed independently from the drawn values."""
    if task.family == "value":
        return str(values[task.asked[0]])
    if task.family == "difference":
        return str(values[task.asked[0]] - values[task.asked[1]])
    if task.family == "sum":
        return str(sum(values.values()))
    pick = max if task.family == "tallest" else min
    return f"bar {pick(values, key=values.get)}"


def test_tasks_are_deterministic_balanced_and_exact():
    first, again = list(world.tasks("test", 200)), list(world.tasks("test", 200))
    assert first == again
    assert first != list(world.tasks("test", 200, seed=1))
    assert {f: sum(t.family == f for t in first) for f in world.FAMILIES} == dict.fromkeys(world.FAMILIES, 40)
    for task in first:
        values = dict(zip(task.scene.labels, task.scene.values, strict=True))
        assert len(set(task.scene.values)) == len(values) in (3, 4)
        assert all(1 <= v <= world.MAX_VALUE for v in values.values())
        assert task.answer == _solve(task, values)
        if task.options:
            assert task.options == tuple(f"bar {label}" for label in task.scene.labels)
        assert int(task.answer) > 0 if task.family == "difference" else True


def test_train_and_test_scenes_never_overlap():
    train = {t.scene.values for t in world.tasks("train", 3000)}
    test = {t.scene.values for t in world.tasks("test", 1000)}
    assert not train & test
    assert all(world.Scene(values=v).split == "test" for v in test)


def test_drawing_shows_each_bar_at_its_height_in_its_slot():
    scene = world.Scene(values=(19, 1, 7, 12))
    image = world.draw(scene)
    assert image.size == (224, 224) and image.mode == "RGB"
    pixels = image.load()
    for i, value in enumerate(scene.values):
        x = i * world.SLOT + world.SLOT // 2
        coloured = [y for y in range(world.BASELINE) if pixels[x, y] == world._COLORS[i]]
        assert len(coloured) == value * world.UNIT, (scene.labels[i], value)
    assert Image.open(__import__("io").BytesIO(world.png(scene))).size == (224, 224)


@pytest.mark.parametrize("style", ["line", "partial"])
def test_reasoner_work_is_correct_arithmetic_and_grades_right(style):
    for task in world.tasks("train", 100):
        work = world.reasoner_work(task, sum_style=style)
        assert work.endswith(f"\\boxed{{{task.letter or task.answer}}}")
        equations = re.findall(r"(\d+(?: [+-] \d+)+) = (\d+)", work)
        assert bool(equations) == (task.family in ("difference", "sum"))
        for expression, result in equations:
            terms = re.findall(r"([+-]?) ?(\d+)", expression)
            assert int(result) == sum(-int(n) if sign == "-" else int(n) for sign, n in terms)
        prediction = extract_answer(work, list(task.options) if task.options else None)
        assert grade(prediction, task.answer, options=list(task.options) if task.options else None,
                     answer_type=task.answer_type).correct
        if task.family == "sum" and style == "partial" and len(task.scene.values) == 4:
            assert work.count("=") == 3


def test_descriptions_full_and_partial():
    scene = world.Scene(values=(4, 15, 9))
    assert world.describe(scene) == "bar A: 4; bar B: 15; bar C: 9"
    rng = random.Random(0)
    partial = [world.partial_description(scene, rng, full_probability=0.2) for _ in range(400)]
    full = sum(p == world.describe(scene) for p in partial) / len(partial)
    assert 0.1 < full < 0.3
    assert all(p in {world.describe(scene, "".join(pair)) for pair in ("AB", "AC", "BC")} for p in partial
               if p != world.describe(scene))
    assert {p for p in partial if p.count("bar") == 2} == {"bar A: 4; bar B: 15", "bar A: 4; bar C: 9", "bar B: 15; bar C: 9"}


def test_unknown_family_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown question family"):
        world.make_task(random.Random(0), world.Scene(values=(1, 2, 3)), "area", "x")  # type: ignore[arg-type]


def _as_dicts(messages) -> list[dict]:
    from rapid_agent.models.hf import HFVisionChatModel

    converted = HFVisionChatModel(model_path="unused")._conversation(messages)
    return [{"role": m["role"], "content": [p if p["type"] == "text" else {"type": "image"} for p in m["content"]]}
            for m in converted]


def _multimodal(prompt: list[dict]) -> list[dict]:
    from trl.data_utils import prepare_multimodal_messages

    return [{"role": m["role"], "content": [p if p["type"] == "text" else {"type": "image"} for p in m["content"]]}
            for m in prepare_multimodal_messages(prompt, images=[Image.new("RGB", (8, 8))])]


@pytest.mark.parametrize("family", world.FAMILIES)
def test_training_prompts_are_what_the_graph_sends(family):
    """SFT and VPO prompts equal the graph's messages: caption, direct (tentative) and reasoner turns."""
    task = next(t for t in world.tasks("test", 5) if t.family == family)
    captioner = ScriptedChatModel(respond=lambda m: world.describe(task.scene))
    reasoner = ScriptedChatModel(respond=lambda m: "\\boxed{1}")
    graph = build_rapid_graph(captioner, reasoner, prompt_preset="paper-eval")
    graph.invoke({"images": [world.png(task.scene)], "question": task.question,
                  "options": list(task.options) if task.options else None})
    caption_call, direct_call = sorted(captioner.calls, key=lambda m: m[0].text != sft.caption_prompt(task)[0]["content"])
    assert _as_dicts(caption_call) == _multimodal(sft.caption_prompt(task))
    assert _as_dicts(direct_call) == _multimodal(sft.direct_prompt(task))

    graph = build_rapid_graph(captioner, reasoner, prompt_preset=sft.PRESET)
    graph.invoke({"images": [world.png(task.scene)], "question": task.question,
                  "options": list(task.options) if task.options else None})
    sent = [{"role": {"system": "system", "human": "user"}[m.type], "content": m.text} for m in reasoner.calls[-1]]
    assert sent == sft.reasoner_prompt(world.describe(task.scene), task)


def test_benchmark_loader_serves_held_out_items():
    from evals.tasks import get_benchmark

    samples = get_benchmark("miniworld").load(limit=50)
    assert len(samples) == 50 and len({s.id for s in samples}) == 50
    assert {s.metadata["family"] for s in samples} == set(world.FAMILIES)
    assert all(world.Scene(values=tuple(s.metadata["values"])).split == "test" for s in samples)
    mc = next(s for s in samples if s.options)
    assert grade("A" if mc.answer == "bar A" else mc.answer, mc.answer, **mc.grading()).correct


def test_model_specs_resolve_to_shipped_folders_or_fail_clearly(tmp_path):
    with pytest.raises(ConfigError, match="unknown miniworld model"):
        model_path("reasoner-huge")
    with pytest.raises(ConfigError, match="python -m training.miniworld"):
        model_path("reasoner-small", weights_dir=tmp_path)
    (tmp_path / "reasoner-small").mkdir()
    (tmp_path / "reasoner-small" / "config.json").write_text("{}")
    assert model_path("reasoner-small", weights_dir=tmp_path) == tmp_path / "reasoner-small"
    assert set(MODELS) == {"captioner", "captioner-sft", "captioner-pool", "captioner-guarded", "reasoner-small",
                           "reasoner-large", "reasoner-other"}


def test_claims_read_paired_differences_in_either_order(tmp_path):
    import json

    from training.miniworld.report import RUNS, claims

    def comparison(a, b, diff, low, high):
        return {"a": a, "b": b, "benchmark": "miniworld", "n": 500, "dropped": 0, "accuracy_a": 0.5 + diff / 2,
                "accuracy_b": 0.5 - diff / 2, "difference": diff, "low": low, "high": high, "only_a_correct": 1,
                "only_b_correct": 0, "p_value": 0.01}

    comparisons = [
        comparison(RUNS["small_vpo"], RUNS["blind_small"], 0.5, 0.45, 0.55),
        comparison(RUNS["small_sft"], RUNS["small_vpo"], -0.12, -0.16, -0.08),  # stored B − A: flipped
        comparison(RUNS["large_vpo"], RUNS["small_vpo"], 0.2, -0.01, 0.3),
        comparison(RUNS["large_vpo"], RUNS["large_sft"], 0.09, 0.05, 0.13),
    ]
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"runs": {}, "comparisons": comparisons}))
    found = claims(path)
    assert found["perception"]["holds"]
    assert found["vpo"]["difference"] == pytest.approx(0.12) and found["vpo"]["low"] == pytest.approx(0.08)
    assert found["vpo"]["holds"]
    assert not found["scaling"]["holds"]  # its interval reaches below 0
    assert found["transfer"]["holds"]
    comparisons[1] = comparison(RUNS["small_vpo"], RUNS["small_sft"], 0.08, 0.04, 0.12)
    path.write_text(json.dumps({"runs": {}, "comparisons": comparisons}))
    assert not claims(path)["vpo"]["holds"]  # significant, but under the 10-point margin


def test_the_worlds_tokenizer_knows_its_words_and_keeps_digits_apart(tmp_path):
    from transformers import AutoTokenizer

    from rapid_agent.testing import build_tiny_reasoner

    task = next(world.tasks("test", 1))
    text = sft.reasoner_prompt(world.describe(task.scene), task)[1]["content"]
    generic = AutoTokenizer.from_pretrained(build_tiny_reasoner(tmp_path / "generic"))
    own = AutoTokenizer.from_pretrained(sft.init_reasoner(tmp_path / "own", sft.ReasonerSize(), seed=0))
    assert len(own(text).input_ids) < 0.85 * len(generic(text).input_ids)
    assert own.decode(own(text).input_ids) == text
    tokens = own.convert_ids_to_tokens(own("bar C: 17; 12 + 19 = 31").input_ids)
    assert [t for t in tokens if any(c.isdigit() for c in t)] == list("17121931")  # one token per digit


def _captioner_tokenizer(path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(sft.init_captioner(path, seed=0)).tokenizer


def _large_reasoner_tokenizer(path):
    from transformers import AutoTokenizer

    from training.miniworld.pipeline import MiniworldConfig

    return AutoTokenizer.from_pretrained(sft.init_reasoner(path, MiniworldConfig().large_size, seed=0))


@pytest.mark.parametrize("tokenizer_of", [_captioner_tokenizer, _large_reasoner_tokenizer])
def test_the_tokenizer_names_the_bar_at_every_value(tmp_path, tokenizer_of):
    """The captioner writes each value right after a token naming its bar; the larger reasoner reads it so."""
    tokenizer = tokenizer_of(tmp_path / "model")
    scene = world.Scene(values=(7, 15, 4, 19))
    description = world.describe(scene)
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(description).input_ids)
    assert tokenizer.decode(tokenizer(description).input_ids) == description
    phrases = [tokenizer.convert_tokens_to_ids(tokenizer.tokenize(phrase)) for phrase in world.DESCRIPTION_PHRASES]
    assert all(len(ids) == 1 for ids in phrases)  # `bar A: ` ... `bar D: ` are one token each
    # every digit is at most one token after the token that names its bar
    for i, token in enumerate(tokens):
        if token.isdigit():
            assert tokens[i - 1] in world.DESCRIPTION_PHRASES or (tokens[i - 1].isdigit()
                                                                  and tokens[i - 2] in world.DESCRIPTION_PHRASES)
    assert sum(t.isdigit() for t in tokens) == len("7154" "19")


def test_the_small_reasoner_reads_bar_names_as_words(tmp_path):
    """The small reasoner (VPO's frozen reward model, shipped as trained before the phrases) keeps the plain words."""
    from transformers import AutoTokenizer

    from training.miniworld.pipeline import MiniworldConfig

    tokenizer = AutoTokenizer.from_pretrained(sft.init_reasoner(tmp_path / "small", MiniworldConfig().small_size, seed=0))
    shipped = AutoTokenizer.from_pretrained(model_path("reasoner-small"))
    assert tokenizer.get_vocab() == shipped.get_vocab()
    assert all(len(tokenizer.tokenize(phrase)) > 1 for phrase in world.DESCRIPTION_PHRASES)


def test_captioner_rows_draw_their_chart_as_the_graph_reads_its_png():
    """Each SFT row's chart, drawn as the row is read, has the pixels the graph gets from the chart's PNG."""
    from rapid_agent.images import ImagePolicy, load_images

    data = sft.captioner_dataset(24, seed=3, full_probability=0.5, direct_fraction=0.25)
    tasks = list(world.tasks("train", 24, seed=3))
    for row, task in zip(data, tasks, strict=True):
        (drawn,), (read,) = row["images"], load_images([world.png(task.scene)], ImagePolicy())
        assert (drawn.size, drawn.mode, drawn.tobytes()) == (read.size, read.mode, read.tobytes())
        assert set(row) == {"prompt", "completion", "images"}
    assert data.column_names == ["prompt", "completion", "values"]  # no PNG bytes are stored


@pytest.mark.parametrize(("steps", "fraction", "warmup", "decay"), [(1000, 0.2, 50, 200), (100, 1.0, 50, 50), (10, 0.01, 0, 1)])
def test_sft_rate_decays_over_the_last_share_of_the_steps(steps, fraction, warmup, decay):
    assert sft.SFTStage(steps=steps, batch_size=1, examples=1, decay_fraction=fraction, warmup_steps=warmup).decay_steps == decay


def test_a_resumed_run_that_trains_nothing_keeps_the_wall_clock_of_the_run_that_did(tmp_path, monkeypatch):
    import json

    from training.miniworld.pipeline import MiniworldConfig, Pipeline

    done: set[str] = set()

    def stages(self):
        def stage(name):
            def run():
                if name in done:
                    return {"skipped": True}
                done.add(name)
                return {}
            return run
        return {name: stage(name) for name in ("reasoner-small", "reasoner-large", "captioner-sft", "captioner", "evals")}

    monkeypatch.setattr(Pipeline, "stage_functions", stages)
    Pipeline(MiniworldConfig.quick(shipped=()), tmp_path, progress=False).run(stop_after="reasoner-large")
    assert done == {"reasoner-small", "reasoner-large"}
    assert not json.loads((tmp_path / "wall.json").read_text())["from_scratch"]  # it stopped early
    Pipeline(MiniworldConfig.quick(shipped=()), tmp_path, progress=False).run()
    assert not json.loads((tmp_path / "wall.json").read_text())["from_scratch"]  # resumed: two stages were kept
    done.clear()
    (tmp_path / "stages.json").unlink()
    Pipeline(MiniworldConfig.quick(shipped=()), tmp_path, progress=False).run()
    first = json.loads((tmp_path / "wall.json").read_text())
    assert first["from_scratch"] and first["jobs"] == 1
    Pipeline(MiniworldConfig.quick(shipped=()), tmp_path, progress=False).run()  # everything done: nothing trains
    assert json.loads((tmp_path / "wall.json").read_text()) == first


def test_a_run_on_the_shipped_reasoners_is_from_scratch_for_what_it_trains(tmp_path, monkeypatch):
    import json

    from training.miniworld.pipeline import FIRST_LANE, MiniworldConfig, Pipeline

    def stages(self):
        return {name: (lambda name=name: {"skipped": True, "shipped": True} if name in FIRST_LANE else {})
                for name in ("reasoner-small", "reasoner-large", "captioner-sft", "captioner", "evals")}

    monkeypatch.setattr(Pipeline, "stage_functions", stages)
    Pipeline(MiniworldConfig.quick(), tmp_path, progress=False).run(jobs=2)
    wall = json.loads((tmp_path / "wall.json").read_text())
    assert wall["from_scratch"] and wall["shipped"] == ["reasoner-large", "reasoner-small"] and wall["jobs"] == 2
    assert set(json.loads((tmp_path / "stages.json").read_text())) == {"captioner-sft", "captioner", "evals"}


def test_shipped_reasoners_are_taken_byte_for_byte(tmp_path):
    from rapid_agent.miniworld import model_path
    from training.miniworld.pipeline import MiniworldConfig, Pipeline

    run = Pipeline(MiniworldConfig.quick(), tmp_path, progress=False)
    assert run.stage_functions()["reasoner-small"]() == {"skipped": True, "shipped": True}
    for shipped in model_path("reasoner-small").iterdir():
        assert (run.model("reasoner-small") / shipped.name).read_bytes() == shipped.read_bytes()


def _quick_pipeline_with_models(tmp_path, monkeypatch, evals_run):
    """A quick-config pipeline whose models are placeholder files and whose `python -m evals.run` is `evals_run`."""
    from training.miniworld import pipeline as mw

    monkeypatch.setattr(mw, "_run_module", evals_run)
    run = mw.Pipeline(mw.MiniworldConfig.quick(), tmp_path, progress=False)
    for name in MODELS:
        run.model(name).mkdir(parents=True)
        (run.model(name) / "model.safetensors").write_bytes(name.encode())
    return run


def test_evals_stage_reruns_when_any_model_changed(tmp_path, monkeypatch):
    calls = []
    run = _quick_pipeline_with_models(tmp_path, monkeypatch, lambda module, argv: calls.append(module))
    (tmp_path / "evals" / "all").mkdir(parents=True)
    assert run.evaluate() == {} and calls == ["evals.run"]
    assert run.evaluate() == {"skipped": True} and len(calls) == 1  # the same models: their results stand
    (tmp_path / "evals" / "all" / "samples.jsonl").write_text("results of the models before\n")
    (run.model("captioner") / "model.safetensors").write_bytes(b"retrained")
    assert run.evaluate() == {} and len(calls) == 2  # a retrained captioner is evaluated again
    assert not (tmp_path / "evals" / "all" / "samples.jsonl").exists()  # from a clean folder, not resumed into old results


def test_evals_run_in_the_configured_modes_and_the_claims_need_decoupled_and_blind(tmp_path, monkeypatch):
    from pydantic import ValidationError

    from training.miniworld import pipeline as mw

    argv = []
    run = _quick_pipeline_with_models(tmp_path, monkeypatch, lambda module, args: argv.extend(args))
    run.evaluate()
    assert [argv[i + 1] for i, flag in enumerate(argv) if flag == "--mode"] == ["decoupled", "blind"]  # quick: no direct
    assert mw.MiniworldConfig().eval_modes == ("decoupled", "direct", "blind")
    with pytest.raises(ValidationError, match="add blind"):
        mw.MiniworldConfig(eval_modes=("decoupled", "direct"))


@pytest.mark.slow
def test_two_lanes_train_the_captioner_beside_the_reasoners(tmp_path):
    """`jobs=2` (the full run's default): the captioner's SFT and VPO in a second process, each lane one of the threads."""
    import json

    import torch

    from training.miniworld.pipeline import MiniworldConfig, Pipeline

    tiny = {"steps": 3, "batch_size": 2, "examples": 6, "warmup_steps": 0}
    config = MiniworldConfig(reasoner_small=sft.SFTStage(**tiny), reasoner_large=sft.SFTStage(**tiny),
                             captioner=(sft.CaptionerPhase(**tiny, full_probability=1.0, direct_fraction=0.0),),
                             vpo_steps=1, pool_claim=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        Pipeline(config, tmp_path, progress=False).run(stop_after="captioner", jobs=2)
        assert torch.get_num_threads() == 2  # this process got the side lane's thread back
    finally:
        torch.set_num_threads(threads)
    stages = json.loads((tmp_path / "stages.json").read_text())
    assert set(stages) == {"reasoner-small", "reasoner-large", "captioner-sft", "captioner"}
    assert {s["device"] for s in stages.values()} == {"CPU, 1 threads"}  # two lanes, a thread each
    side_log = (tmp_path / "side-lane.log").read_text()
    assert "stage captioner-sft" in side_log and "stage captioner:" in side_log  # trained by the second process
    assert all((tmp_path / "models" / name / "model.safetensors").is_file() for name in stages)


def _pipeline_without_vpo_process(tmp_path, monkeypatch, *, side_lane):
    """A quick-config pipeline whose `python -m training.vpo` records that it ran (and what it found) instead."""
    import json

    from training.miniworld import pipeline as mw

    run = mw.Pipeline(mw.MiniworldConfig.quick(), tmp_path, progress=False, side_lane=side_lane)
    ran = []

    def fake_vpo(argv, callbacks):
        ran.append(("training.vpo", mw._done(run.model("reasoner-small"))))
        work = tmp_path / "work" / "captioner"
        work.mkdir(parents=True)
        (work / "trainer_state.json").write_text(json.dumps({"log_history": []}))

    monkeypatch.setattr(mw, "_run_vpo", fake_vpo)
    (run.model("captioner-sft")).mkdir(parents=True)
    (run.model("captioner-sft") / mw.DONE).write_text("ok\n")
    return run, ran


def test_vpo_in_the_side_lane_starts_once_the_first_lane_has_the_small_reasoner(tmp_path, monkeypatch):
    from training.miniworld import pipeline as mw

    run, ran = _pipeline_without_vpo_process(tmp_path, monkeypatch, side_lane=True)
    polls = []

    def first_lane_finishes_on_the_third_poll(seconds):
        polls.append(seconds)
        if len(polls) == 3:
            run.model("reasoner-small").mkdir(parents=True)
            (run.model("reasoner-small") / mw.DONE).write_text("ok\n")

    monkeypatch.setattr(mw.time, "sleep", first_lane_finishes_on_the_third_poll)
    assert run.train_vpo("captioner", ["reasoner-small"]) == {}
    assert ran == [("training.vpo", True)] and len(polls) == 3  # waited, then trained on the finished model


def test_vpo_without_the_small_reasoner_names_the_missing_stage(tmp_path, monkeypatch):
    from training.miniworld import pipeline as mw

    run, ran = _pipeline_without_vpo_process(tmp_path, monkeypatch, side_lane=False)
    with pytest.raises(RuntimeError, match="'reasoner-small' has not run"):
        run.train_vpo("captioner", ["reasoner-small"])
    side, side_ran = _pipeline_without_vpo_process(tmp_path / "side", monkeypatch, side_lane=True)
    parents = iter([100, 100, 1])  # the first lane's process dies while the side lane waits
    monkeypatch.setattr(mw.os, "getppid", lambda: next(parents))
    monkeypatch.setattr(mw.time, "sleep", lambda seconds: None)
    with pytest.raises(RuntimeError, match="lane training 'reasoner-small' is gone"):
        side.train_vpo("captioner", ["reasoner-small"])
    assert ran == side_ran == []


@pytest.mark.slow  # spawns processes
def test_a_failing_lane_stops_the_other_lane_and_its_children(tmp_path, monkeypatch):
    import subprocess
    import sys
    import time

    from training.miniworld import pipeline as mw

    child_pid = tmp_path / "child.pid"
    started = []

    def side_lane_with_a_child(self, stages):  # a lane that, like VPO, runs a process of its own
        child = ("import pathlib, subprocess, sys, time; "
                 "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
                 f"pathlib.Path({str(child_pid)!r}).write_text(str(c.pid)); time.sleep(600)")
        started.append(subprocess.Popen([sys.executable, "-c", child], start_new_session=True))
        return started[-1]

    def first_lane_fails():
        while not child_pid.is_file() or not child_pid.read_text():  # the other lane is busy with its child
            time.sleep(0.05)
        raise RuntimeError("reasoner-small failed")

    monkeypatch.setattr(mw.Pipeline, "_start_side_lane", side_lane_with_a_child)
    monkeypatch.setattr(mw.Pipeline, "stage_functions", lambda self: {name: first_lane_fails for name in
                        ("reasoner-small", "reasoner-large", "captioner-sft", "captioner", "evals")})
    with pytest.raises(RuntimeError, match="reasoner-small failed"):
        mw.Pipeline(mw.MiniworldConfig(), tmp_path, progress=False).run(jobs=2)
    assert started[0].poll() is not None  # stopped, not left training
    pid, deadline = int(child_pid.read_text()), time.monotonic() + 120  # a hang guard, not a timing check

    def alive(pid):  # a killed child may linger as a zombie until init reaps it
        try:
            return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
        except FileNotFoundError:
            return False

    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid)  # its child went with it


def test_a_thread_share_written_to_a_file_is_taken_up_while_training(tmp_path):
    """CI starts the quick run on one thread beside the suite, then hands it the second core through a file."""
    import torch
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from training.miniworld.threads import ThreadShare

    before = torch.get_num_threads()
    share_file = tmp_path / "threads"
    share = ThreadShare(3, share_file)
    try:
        assert share.current() == 3  # no file yet: the fixed count
        share_file.write_text("1\n")
        assert share.apply() == 1 and torch.get_num_threads() == 1
        follow, state = share.callback(), TrainerState()
        args = TrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to=[])
        for step, written in enumerate(["2", "1", "2"], start=7):  # taken up at the next step, whichever it is
            share_file.write_text(f"{written}\n")
            state.global_step = step
            follow.on_step_begin(args, state, TrainerControl())
            assert torch.get_num_threads() == int(written)
        share_file.write_text("many\n")
        assert share.current() == 3  # unreadable: the fixed count
    finally:
        torch.set_num_threads(before)
