"""VPOConfig (TRL's GRPOConfig plus RAPID's fields), the recipes, the launcher configs and the documented commands."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import shlex
from pathlib import Path

import pytest
import yaml
from trl import GRPOConfig, ModelConfig

from rapid_agent.errors import ConfigError
from training import vpo
from training.config import RECIPES, VPOConfig, parse_args, policy_path
from training.export import build_parser as export_parser

REPO = Path(__file__).resolve().parents[1]


def _recipe(name: str, *flags: str) -> VPOConfig:
    return parse_args(["--config", str(RECIPES / f"{name}.yaml"), *flags])[0]


def test_paper_recipe_holds_the_paper_values():
    paper = _recipe("paper")
    assert paper.num_generations == 4 and paper.learning_rate == 1e-6 and paper.lr_scheduler_type == "constant"
    assert paper.beta == 0.001 and paper.epsilon == 0.2 and paper.temperature == 1.0 and paper.loss_type == "dapo"
    assert paper.max_completion_length == 8192 and paper.weight_decay == 0.01 and paper.max_grad_norm == 1.0
    # 256 prompts x G=4 per rollout, two updates per rollout, on 8 processes
    assert paper.per_device_train_batch_size * 8 * paper.steps_per_generation == 256 * 4
    assert paper.steps_per_generation // paper.gradient_accumulation_steps == 2
    assert paper.reasoner == ["openai:deepseek-ai/DeepSeek-R1-Distill-Qwen-7B@http://127.0.0.1:8001/v1"]


@pytest.mark.parametrize("name", sorted(p.stem for p in RECIPES.glob("*.yaml")))
def test_every_recipe_parses_and_says_why_it_departs_from_the_paper(name):
    config, model_args = parse_args(["--config", str(RECIPES / f"{name}.yaml")])
    assert model_args.model_name_or_path and config.reasoner and config.output_dir.startswith("runs/")
    paper = yaml.safe_load((RECIPES / "paper.yaml").read_text())
    for line in (RECIPES / f"{name}.yaml").read_text().splitlines():
        key, _, rest = line.partition(":")
        if line.startswith("#") or not rest.strip() or key not in paper or key == "output_dir":
            continue
        value = yaml.safe_load(rest.split(" #")[0])
        if value != paper[key]:  # a departure carries its reason: "# paper: <its value>; <why>"
            assert re.search(r"#\s*paper: [^;]+; \w+", rest), f"{name}.yaml: {line!r} departs from the paper unexplained"


def test_every_trl_grpo_option_is_a_flag_in_trl_spelling(tmp_path):
    parser_dests = {a.dest for a in vpo_parser()._actions}
    assert {f.name for f in dataclasses.fields(GRPOConfig) if f.init} <= parser_dests
    assert {f.name for f in dataclasses.fields(ModelConfig)} <= parser_dests
    # options this project never names, from the command line and from a YAML file
    flags = ["--importance_sampling_level", "sequence", "--top_k", "20", "--mask_truncated_completions", "true",
             "--vllm_importance_sampling_correction", "false", "--loss_type", "grpo", "--epsilon_high", "0.28",
             "--num_iterations", "2", "--disable_dropout", "true", "--report-to", "tensorboard", "--max_grad_norm", "0.5"]
    config, _ = parse_args(["--dataset_name", "demo", *flags])
    assert (config.importance_sampling_level, config.top_k, config.mask_truncated_completions) == ("sequence", 20, True)
    assert (config.vllm_importance_sampling_correction, config.loss_type, config.epsilon_high) == (False, "grpo", 0.28)
    assert (config.num_iterations, config.disable_dropout, config.report_to, config.max_grad_norm) == (2, True, ["tensorboard"], 0.5)
    run = tmp_path / "run.yaml"
    run.write_text("importance_sampling_level: sequence\ntop_k: 7\nmask_truncated_completions: true\nscale_rewards: batch\n")
    config, _ = parse_args(["--config", str(run)])
    assert (config.importance_sampling_level, config.top_k, config.mask_truncated_completions) == ("sequence", 7, True)
    assert config.scale_rewards == "batch"


def vpo_parser():
    from trl import TrlParser

    return TrlParser((VPOConfig, ModelConfig))


def test_flags_override_the_recipe_and_a_pool_is_named_by_repeating_the_flag(tmp_path):
    run = tmp_path / "run.yaml"
    run.write_text(yaml.safe_dump({"learning_rate": 5e-6, "num_generations": 8, "use_peft": True, "max_samples": 3,
                                   "reasoner": ["tiny"], "per_device_train_batch_size": 8}))
    config, model_args = parse_args([
        "--config", str(run), "--num_generations", "4", "--use_peft", "false", "--lora_target_modules", "q_proj", "v_proj",
        "--beta", "0", "--reasoner", "miniworld:reasoner-small", "--reasoner", "miniworld:reasoner-large",
        "--reasoner_weights", "3", "1", "--reasoner_pool", "sample",
    ])
    assert config.learning_rate == 5e-6 and config.max_samples == 3  # from the file
    assert config.num_generations == 4 and model_args.use_peft is False and config.beta == 0.0  # flags win
    assert model_args.lora_target_modules == ["q_proj", "v_proj"]
    assert config.reasoner == ["miniworld:reasoner-small", "miniworld:reasoner-large"] and config.reasoner_pool == "sample"
    assert config.pool_weights() == [0.75, 0.25]
    assert parse_args(["--reasoner", "a", "b"])[0].reasoner == ["a", "b"]  # one flag, several values, as TRL lists go


def test_unknown_keys_are_refused_by_name(tmp_path, capsys):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("learning_rate: 1.0e-6\nlearnin_rate: 2.0e-6\n")
    with pytest.raises(ConfigError, match="unknown key.*learnin_rate"):
        parse_args(["--config", str(config_file)])
    with pytest.raises(ConfigError, match="unknown flag.*--learnin_rate 1e-6"):
        parse_args(["--learnin_rate", "1e-6"])
    with pytest.raises(SystemExit):  # a value of the wrong type: argparse's own message, naming the flag
        parse_args(["--learning_rate", "fast"])
    assert "argument --learning_rate" in capsys.readouterr().err
    for text, message in (("[1, 2]", "must hold a mapping"), ("a: [", "not valid YAML")):
        config_file.write_text(text)
        with pytest.raises(ConfigError, match=message):
            parse_args(["--config", str(config_file)])
    with pytest.raises(ConfigError, match="config file not found"):
        parse_args(["--config", str(tmp_path / "missing.yaml")])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--num_generations", "1", "--per_device_train_batch_size", "2"], "at least 2 generations"),
        (["--prompt_preset", "paper-eval"], "tentative"),
        (["--prompt_preset", "nope"], "unknown prompt preset"),
        (["--reasoner_samples", "4", "--reasoner_temperature", "0"], "identical answers"),
        (["--reasoner", "a", "b", "--reasoner_weights", "1"], "1 weights for 2 reasoners"),
        (["--reasoner_weights", "-1"], "non-negative"),
        (["--reasoner_max_new_tokens", "0"], "reasoner_max_new_tokens must be positive"),
        (["--filter_samples", "1"], "filter_samples must be at least 2"),
        (["--leak_penalty", "-1"], "leak_penalty must be >= 0"),
        (["--answer_type", "colour"], "answer_type must be one of"),
        (["--reward_weights", "1", "2"], "reward_weights is set by VPO"),
        (["--per_device_train_batch_size", "6", "--num_generations", "4"], r"generation_batch_size \(6\).*num_generations \(4\)"),
    ],
)
def test_impossible_values_are_refused(flags, message):
    with pytest.raises(ConfigError, match=message):
        parse_args(flags)


def test_a_bad_config_fails_before_anything_is_written(tmp_path, capsys):
    code = vpo.main(["--per_device_train_batch_size", "6", "--dataset_name", "demo", "--output_dir", str(tmp_path / "run")])
    assert code == 2 and "must be divisible by num_generations" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_rollouts_without_vllm_installed_are_refused_up_front(tmp_path, capsys):
    assert vpo.main(["--use_vllm", "true", "--dataset_name", "demo", "--output_dir", str(tmp_path / "run")]) == 2
    assert "use_vllm needs vLLM" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_the_policy_lora_and_precision_come_from_trl_model_config(tmp_path):
    import torch
    from trl import get_peft_config

    config, model_args = parse_args([
        "--config", str(RECIPES / "paper.yaml"), "--output_dir", str(tmp_path), "--bf16", "false",
        "--use_peft", "--lora_target_modules", "q_proj", "v_proj", "--lora_r", "8",
        "--model_name_or_path", "miniworld:captioner-sft",
    ])
    assert config.use_cpu and config.bf16 is False  # no GPU here: fp32 on the CPU
    assert vpo.model_init_kwargs(config, model_args)["dtype"] == torch.float32
    lora = get_peft_config(model_args)
    assert lora.r == 8 and set(lora.target_modules) == {"q_proj", "v_proj"} and vpo.peft_config(model_args) == lora
    assert vpo.peft_config(ModelConfig(use_peft=True)).target_modules == set(vpo.LORA_DEFAULT_TARGETS)
    assert vpo.peft_config(ModelConfig()) is None  # full fine-tuning
    assert Path(policy_path(model_args)).name == "captioner-sft" and Path(policy_path(model_args)).is_dir()
    assert config.reward_weights == [1.0, 0.0]  # the accuracy, then the leak check (logged, weight 0 in the paper's run)
    guarded = parse_args(["--describe_check", "tiny", "--length_penalty", "0.5"])[0]
    assert [name for name, _ in guarded.reward_terms()] == ["reasoner_accuracy", "leak_penalty", "describe_check", "caption_length"]
    assert guarded.reward_weights == [1.0, 1.0, 0.1, 0.5]


@pytest.mark.parametrize("name", ["ddp.yaml", "zero2.yaml", "zero3.yaml"])
def test_shipped_accelerate_configs_parse(name):
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.commands.launch import launch_command_parser

    config = ClusterConfig.from_yaml_file(REPO / "training" / "accelerate" / name)
    expected = {"ddp.yaml": ("MULTI_GPU", None), "zero2.yaml": ("DEEPSPEED", 2), "zero3.yaml": ("DEEPSPEED", 3)}[name]
    assert (str(config.distributed_type).split(".")[-1], (config.deepspeed_config or {}).get("zero_stage")) == expected
    launch_dests = {action.dest for action in launch_command_parser()._actions}
    assert set(config.deepspeed_config or {}) <= launch_dests  # accelerate launch knows every DeepSpeed key


def _documented_commands() -> list[list[str]]:
    text = (REPO / "docs" / "training.md").read_text()
    blocks = text.split("```")[1::2]
    commands = []
    for line in (line for block in blocks for line in block.splitlines()):
        words = shlex.split(line)
        while words and "=" in words[0] and not words[0].startswith("-"):
            words = words[1:]  # environment assignments such as CUDA_VISIBLE_DEVICES=0,1
        if words:
            commands.append(words)
    return commands


def test_documented_commands_are_accepted_by_the_code(monkeypatch):
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.commands.launch import launch_command_parser
    from trl.scripts.vllm_serve import make_parser as vllm_serve_parser

    monkeypatch.chdir(REPO)
    checked = {"training.vpo": 0, "accelerate": 0, "trl vllm-serve": 0, "training.export": 0}
    for words in _documented_commands():
        if words[:3] == ["python", "-m", "training.vpo"]:
            parse_args(words[3:])
            checked["training.vpo"] += 1
        elif words[:2] == ["accelerate", "launch"]:
            launch = launch_command_parser().parse_args(words[2:])
            assert launch.module and launch.training_script == "training.vpo", words
            assert ClusterConfig.from_yaml_file(launch.config_file)
            config, _ = parse_args(launch.training_script_args)
            processes = launch.num_processes or ClusterConfig.from_yaml_file(launch.config_file).num_processes
            assert config.generation_batch_size * processes % config.num_generations == 0, words
            checked["accelerate"] += 1
        elif words[:2] == ["trl", "vllm-serve"]:
            vllm_serve_parser().parse_args_and_config(words[2:])
            checked["trl vllm-serve"] += 1
        elif words[:3] == ["python", "-m", "training.export"]:
            export_parser().parse_args(words[3:])
            checked["training.export"] += 1
    assert checked == {"training.vpo": 4, "accelerate": 4, "trl vllm-serve": 1, "training.export": 1}
