"""End-to-end VPO runs on the CPU with the tiny models: CLI, checkpoints, resume, export, learning."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image, ImageDraw
from trl import ModelConfig

from rapid_agent import build_rapid_graph
from rapid_agent.models.hf import HFVisionChatModel
from rapid_agent.models.spec import GenerationSettings, ModelResolver
from rapid_agent.testing import ScriptedChatModel, fact_reasoner
from rapid_agent.testing.local_servers import free_port
from training import vpo
from training.config import VPOConfig, parse_args
from training.export import export_merged

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def _tiny_run_flags(captioner: Path, out: Path) -> list[str]:
    return [
        "--dataset_name", "demo", "--model_name_or_path", str(captioner), "--output_dir", str(out),
        "--max_steps", "2", "--save_steps", "1", "--per_device_train_batch_size", "4", "--num_generations", "4",
        "--max_completion_length", "12", "--reasoner_max_new_tokens", "12", "--activation_checkpointing", "false",
        "--logging_steps", "1",
    ]


def _log_steps(trainer_state: Path) -> list[dict]:
    return [h for h in json.loads(trainer_state.read_text())["log_history"] if "vpo/reward_mean" in h]


def _by_spec(path: Path) -> HFVisionChatModel:
    """The captioner the spec `hf:PATH` (as evals and the library take it) resolves to, with short captions."""
    model = ModelResolver(generation={"captioner": GenerationSettings(max_new_tokens=8)}).resolve(f"hf:{path}", "captioner")
    assert isinstance(model, HFVisionChatModel)
    return model


def _describe(captioner) -> dict:
    """Run the core graph with `captioner` (a model or spec) on a picture; the caption node must answer."""
    graph = build_rapid_graph(captioner=captioner, reasoner=fact_reasoner({}, fallback="\\boxed{1}"))
    return graph.invoke({"images": [Image.new("RGB", (64, 48), "red")], "question": "What colour is it?"})


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, tiny_captioner_path, tiny_reasoner_path) -> Path:
    """`python -m training.vpo` as users run it: local HF reasoner, full fine-tuning, two steps."""
    out = tmp_path_factory.mktemp("vpo-full") / "run"
    command = [sys.executable, "-m", "training.vpo", *_tiny_run_flags(tiny_captioner_path, out),
               "--reasoner", f"hf:{tiny_reasoner_path}"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_captioner_path, reasoner_server) -> Path:
    """The reasoner behind a real local OpenAI-compatible server; LoRA on the captioner."""
    out = tmp_path_factory.mktemp("vpo-lora") / "run"
    flags = [*_tiny_run_flags(tiny_captioner_path, out), "--reasoner", reasoner_server.spec, "--use_peft",
             "--lora_r", "4", "--lora_alpha", "8", "--lora_target_modules", "q_proj", "v_proj"]
    assert vpo.main(flags) == 0
    return out


def test_cli_run_with_local_hf_reasoner_writes_loadable_full_checkpoints(full_run):
    steps = _log_steps(full_run / "checkpoint-2" / "trainer_state.json")
    assert [s["step"] for s in steps] == [1, 2]
    assert all(s["vpo/reasoner_errors"] == 0 and s["vpo/reasoner_latency_s"] > 0 for s in steps)
    assert (full_run / "checkpoint-1").is_dir() and (full_run / "model.safetensors").is_file()
    assert not (full_run / "adapter_config.json").exists()
    record = yaml.safe_load((full_run / "vpo_config.yaml").read_text())
    assert record["resolved"]["reasoner"][0].startswith("hf:") and record["command"][:3] == ["python", "-m", "training.vpo"]
    model = HFVisionChatModel(model_path=str(full_run), max_new_tokens=8)
    assert len(_describe(model)["captions"]) == 1
    assert model.generate_calls == 1


def test_run_with_served_reasoner_and_lora_writes_an_adapter_the_core_loads(lora_run, reasoner_server):
    steps = _log_steps(lora_run / "checkpoint-2" / "trainer_state.json")
    assert [s["step"] for s in steps] == [1, 2]
    assert all(s["vpo/reasoner_errors"] == 0 and s["vpo/reasoner_latency_s"] > 0 for s in steps)
    assert (lora_run / "adapter_config.json").is_file() and not (lora_run / "model.safetensors").exists()
    assert reasoner_server.spec in (lora_run / "vpo_config.yaml").read_text()
    assert len(_describe(_by_spec(lora_run))["captions"]) == 1


@pytest.mark.parametrize("served, lora", [(False, True), (True, False)])
def test_the_other_reasoner_and_lora_combinations(served, lora, request, tmp_path, tiny_captioner_path,
                                                  tiny_reasoner_path):
    reasoner = request.getfixturevalue("reasoner_server").spec if served else f"hf:{tiny_reasoner_path}"
    out = tmp_path / "run"
    flags = [*_tiny_run_flags(tiny_captioner_path, out), "--reasoner", reasoner, "--save_steps", "2",
             "--length_penalty", "0.5", "--max_completion_length", "6"]
    assert vpo.main(flags + (["--use_peft", "--lora_r", "4"] if lora else [])) == 0
    steps = _log_steps(out / "checkpoint-2" / "trainer_state.json")
    assert [s["step"] for s in steps] == [1, 2] and all(s["vpo/reasoner_errors"] == 0 for s in steps)
    # the weighted length term is a second reward, logged on its own: minus the caption tokens over the cap
    assert all(s["rewards/caption_length/mean"] == pytest.approx(-s["vpo/caption_length"] / 6) for s in steps)
    assert all(s["rewards/caption_length/mean"] < 0 for s in steps)
    assert (out / "adapter_config.json").is_file() == lora
    assert len(_describe(_by_spec(out))["captions"]) == 1


def test_export_merges_the_lora_into_full_weights(lora_run, tmp_path):
    merged = export_merged(lora_run, tmp_path / "merged")
    assert (merged / "model.safetensors").is_file() and not (merged / "adapter_config.json").exists()
    from_adapter = HFVisionChatModel(model_path=str(lora_run), max_new_tokens=8)
    from_merged = HFVisionChatModel(model_path=str(merged), max_new_tokens=8)
    assert _describe(from_merged)["captions"] == _describe(from_adapter)["captions"]  # greedy: same weights
    with pytest.raises(Exception, match="no LoRA adapter"):
        export_merged(merged, tmp_path / "again")


def test_resume_from_checkpoint_continues_the_run(full_run, tmp_path, tiny_captioner_path):
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    reasoner = ScriptedChatModel(respond=lambda messages: "\\boxed{1}")
    flags = _tiny_run_flags(tiny_captioner_path, run) + ["--max_steps", "3", "--resume_from_checkpoint", "latest"]
    vpo.train(*parse_args(flags), reasoners=[reasoner])
    steps = _log_steps(run / "checkpoint-3" / "trainer_state.json")
    assert [s["step"] for s in steps] == [1, 2, 3]
    assert len(reasoner.calls) == 1 + 4  # the start-up check, then one step of 4 captions: steps 1-2 were not redone


def test_unreachable_reasoner_fails_before_any_training_step(tmp_path, tiny_captioner_path, capsys):
    url = f"http://127.0.0.1:{free_port()}/v1"
    out = tmp_path / "run"
    assert vpo.main([*_tiny_run_flags(tiny_captioner_path, out), "--reasoner", f"openai:reasoner@{url}"]) == 2
    err = capsys.readouterr().err
    # the served-model pre-check, before any data or weights load
    assert f"training.vpo: error: reasoner: the server at {url} is unreachable" in err and "Traceback" not in err
    assert not list(out.glob("checkpoint-*"))


def _digit_task(folder: Path, rows: int = 8) -> Path:
    """Pictures of three shapes, asked "how many": the reasoner answers only when the caption states a number."""
    lines = []
    for i in range(rows):
        image = Image.new("RGB", (96, 64), "white")
        draw = ImageDraw.Draw(image)
        for x in (8, 38, 68):
            draw.ellipse((x, 20 + i, x + 20, 40 + i), fill=(40 * i % 256, 90, 200))
        image.save(folder / f"{i}.png")
        lines.append(json.dumps({"id": f"r{i}", "question": "How many shapes are in the picture?", "answer": "3",
                                 "image": f"{i}.png"}))
    (folder / "task.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "task.jsonl"


def _rewards(tmp_path: Path, captioner: Path, data: Path, learning_rate: float) -> list[float]:
    config = VPOConfig(
        dataset_name=str(data), output_dir=str(tmp_path / f"lr{learning_rate}"), num_generations=4,
        per_device_train_batch_size=16, max_completion_length=16, learning_rate=learning_rate, beta=0.0, max_steps=20,
        save_steps=1000, seed=7, activation_checkpointing=False, logging_steps=1, reasoner=["tiny"],
        leak_penalty=0.0,  # a caption of just "3" states the answer: this test is about the gradient's sign
    )
    # Stands for a reasoner that needs the count from the caption: it answers 3 iff the caption has a number.
    reasoner = fact_reasoner({str(d): "3" for d in range(10)})
    trainer = vpo.train(config, ModelConfig(model_name_or_path=str(captioner)), reasoners=[reasoner])
    return [h["reward"] for h in trainer.state.log_history if "reward" in h]


def test_vpo_raises_the_reward_of_a_tiny_captioner(tmp_path, tiny_captioner_path):
    """The reward reaches the policy gradient with the right sign: captions that let the reasoner
    answer become more likely. The same seeded run without learning stays where it started."""
    data = _digit_task(tmp_path)
    learned = _rewards(tmp_path, tiny_captioner_path, data, learning_rate=3e-3)
    frozen = _rewards(tmp_path, tiny_captioner_path, data, learning_rate=1e-12)
    start, end = sum(learned[:4]) / 4, sum(learned[-4:]) / 4
    assert len(learned) == 20 and 0.05 < start < 0.6  # random captions sometimes hold a digit
    assert end - start > 0.35, learned
    assert abs(sum(frozen[-4:]) / 4 - sum(frozen[:4]) / 4) < 0.25, frozen  # noise alone does not clear the margin


@pytest.mark.parametrize("run", ["full_run", "lora_run"])
def test_evals_cli_scores_the_trained_captioner(run, request, tmp_path, tiny_reasoner_path):
    from evals.run import main as evals_main

    checkpoint = request.getfixturevalue(run)
    out = tmp_path / "evals"
    argv = ["--captioner", f"hf:{checkpoint}", "--reasoner", f"hf:{tiny_reasoner_path}", "--benchmark", "bundled", "--limit", "2",
            "--max-new-tokens", "8", "--caption-max-new-tokens", "8", "--output-dir", str(out), "--no-cache",
            "--no-progress"]
    assert evals_main(argv) == 0
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2
    assert all(s["captioner"] == f"hf:{checkpoint}" and s["error"] is None and s["captions"] for s in samples)
