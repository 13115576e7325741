"""VPOConfig, the training CLI's flags, the shipped launcher configs and the documented commands."""

from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path

import pytest
import yaml

from rapid_agent.errors import ConfigError
from training import vpo
from training.config import DIFFERS_FROM_PAPER, PAPER, VPOConfig, make_config
from training.export import build_parser as export_parser

REPO = Path(__file__).resolve().parents[1]


def test_paper_preset_holds_the_paper_values_and_every_departure_is_explained():
    paper = make_config({"preset": "paper"})
    assert paper.num_generations == 4 and paper.learning_rate == 1e-6 and paper.lr_scheduler_type == "constant"
    assert paper.beta == 0.001 and paper.epsilon == 0.2 and paper.temperature == 1.0 and paper.loss_type == "dapo"
    assert paper.max_completion_length == 8192 and paper.weight_decay == 0.01 and paper.max_grad_norm == 1.0
    # 256 prompts x G=4 per rollout and two updates per rollout on 8 processes
    assert paper.generation_batch_size(8) == 256 * 4
    assert paper.generation_batch_size(8) // (paper.per_device_train_batch_size * 8 * paper.gradient_accumulation_steps) == 2
    default = VPOConfig()
    departures = {k for k, v in PAPER.items() if getattr(default, k) != v}
    assert departures == set(DIFFERS_FROM_PAPER)
    help_text = vpo.build_parser().format_help()
    assert "paper: 8192" in help_text  # the CLI says where its defaults differ


def test_explicit_values_beat_the_preset():
    config = make_config({"preset": "paper", "learning_rate": 3e-6})
    assert config.learning_rate == 3e-6 and config.beta == 0.001


def test_every_field_is_a_flag_and_flags_override_the_yaml(tmp_path):
    parser = vpo.build_parser()
    dests = {action.dest for action in parser._actions}
    assert set(VPOConfig.model_fields) <= dests
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump({"learning_rate": 5e-6, "num_generations": 8, "use_lora": True, "max_samples": 3}))
    config = vpo.parse_config(
        [
            "--config", str(config_file), "--num-generations", "6", "--no-use-lora", "--max_samples", "none",
            "--lora-target-modules", "q_proj", "v_proj", "--beta", "0", "--bf16", "false", "--preset", "paper",
        ]
    )
    assert config.learning_rate == 5e-6  # from the file
    assert config.num_generations == 6 and config.use_lora is False and config.max_samples is None  # flags win
    assert config.lora_target_modules == ["q_proj", "v_proj"] and config.beta == 0.0 and config.bf16 is False
    assert config.steps_per_generation == 16  # the preset fills what neither sets


def test_unknown_keys_are_refused_by_name(tmp_path, capsys):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("learning_rate: 1.0e-6\nlearnin_rate: 2.0e-6\n")
    with pytest.raises(ConfigError, match="learnin_rate: unknown key"):
        vpo.parse_config(["--config", str(config_file)])
    with pytest.raises(SystemExit):
        vpo.parse_config(["--learnin-rate", "1e-6"])
    assert "unrecognized arguments: --learnin-rate" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"num_generations": 1}, "num_generations.*at least 2"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"loss_type": "mean"}, "loss_type"),
        ({"prompt_preset": "paper-eval"}, "tentative"),
        ({"prompt_preset": "nope"}, "unknown prompt preset"),
        ({"reasoner_samples": 4, "reasoner_temperature": 0}, "identical answers"),
        ({"use_vllm": True, "vllm_mode": "server"}, "vllm_server_base_url"),
    ],
)
def test_impossible_values_are_refused(values, message):
    with pytest.raises(ConfigError, match=message):
        make_config(values)


def test_a_rollout_batch_of_partial_groups_is_refused_before_anything_loads(tmp_path, capsys):
    config = make_config({"per_device_train_batch_size": 6, "num_generations": 4})
    with pytest.raises(ConfigError, match=r"6\) x processes \(1\).*not divisible by num_generations \(4\)"):
        config.check_batch(1)
    config.check_batch(2)  # 12 captions over two processes: whole groups
    code = vpo.main(["--per-device-train-batch-size", "6", "--dataset", "demo", "--output-dir", str(tmp_path / "run")])
    assert code == 2 and "not divisible by num_generations" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_rollouts_without_vllm_installed_are_refused_up_front(tmp_path, capsys):
    assert vpo.main(["--use-vllm", "--dataset", "demo", "--output-dir", str(tmp_path / "run")]) == 2
    assert "use_vllm needs vLLM" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_grpo_arguments_come_from_the_config(tmp_path):
    config = make_config(
        {"preset": "paper", "output_dir": str(tmp_path), "loss_type": "dr_grpo", "epsilon_high": 0.28,
         "use_lora": True, "lora_target_modules": ["q_proj", "v_proj"], "lora_r": 8}
    )
    args = vpo.grpo_args(config, reward_weights=[1.0, 0.5])
    assert (args.num_generations, args.beta, args.epsilon, args.epsilon_high) == (4, 0.001, 0.2, 0.28)
    assert (args.loss_type, args.learning_rate, args.lr_scheduler_type, args.temperature) == ("dr_grpo", 1e-6, "constant", 1.0)
    assert args.steps_per_generation == 16 and args.max_completion_length == 8192 and args.reward_weights == [1.0, 0.5]
    assert args.use_vllm is False and args.gradient_checkpointing and args.remove_unused_columns is False
    assert args.bf16 is False and args.use_cpu  # no GPU here: fp32 on the CPU
    lora = vpo.lora_config(config)
    assert lora.r == 8 and set(lora.target_modules) == {"q_proj", "v_proj"}
    assert vpo.lora_config(make_config({})) is None
    served = vpo.grpo_args(
        make_config({"use_vllm": True, "vllm_mode": "server", "vllm_server_base_url": "http://10.0.0.2:8000",
                     "output_dir": str(tmp_path)}),
        reward_weights=[1.0],
    )
    assert served.use_vllm and served.vllm_mode == "server" and served.vllm_server_base_url == "http://10.0.0.2:8000"


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
            vpo.parse_config(words[3:]).check_batch(1)
            checked["training.vpo"] += 1
        elif words[:2] == ["accelerate", "launch"]:
            launch = launch_command_parser().parse_args(words[2:])
            assert launch.module and launch.training_script == "training.vpo", words
            assert ClusterConfig.from_yaml_file(launch.config_file)
            vpo.parse_config(launch.training_script_args).check_batch(launch.num_processes)
            checked["accelerate"] += 1
        elif words[:2] == ["trl", "vllm-serve"]:
            vllm_serve_parser().parse_args_and_config(words[2:])
            checked["trl vllm-serve"] += 1
        elif words[:3] == ["python", "-m", "training.export"]:
            export_parser().parse_args(words[3:])
            checked["training.export"] += 1
    assert checked == {"training.vpo": 3, "accelerate": 3, "trl vllm-serve": 1, "training.export": 1}
