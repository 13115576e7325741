"""VPO over two processes (DDP over gloo, on the CPU) and the shipped multi-GPU launcher configs.

The two-process run is the distributed path of a multi-GPU run: each rank generates and scores its own
captions, TRL gathers the rewards and `vpo/*` metrics, rank 0 alone writes the checkpoints and
`vpo_config.yaml`, and a resumed run continues from the last checkpoint. The DeepSpeed configs are
checked the way `accelerate launch` reads them, without DeepSpeed or a GPU.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import yaml

from rapid_agent.testing import ScriptedChatModel
from rapid_agent.testing.openai_server import ScriptedOpenAIServer

REPO = Path(__file__).resolve().parents[1]
ACCELERATE = REPO / "training" / "accelerate"
# 12 captions a step, 3 groups of 4: the middle group spans both ranks
PER_DEVICE, GENERATIONS, PROCESSES = 6, 4, 2
ORACLE_ANSWER = "3"  # what the served pool reasoner answers; the random tiny reasoner never states it


def _launch(captioner: Path, reasoner: Path, oracle: ScriptedOpenAIServer, out: Path, *flags: str) -> None:
    """`accelerate launch` of `training.vpo` on 2 CPU processes, a pool of the local HF reasoner and `oracle`."""
    launcher = ["--config_file", str(ACCELERATE / "cpu_2proc.yaml"), "-m", "training.vpo"]
    run = (
        f"--dataset_name demo --max_steps 2 --save_steps 1 --logging_steps 1 --per_device_train_batch_size {PER_DEVICE} "
        f"--num_generations {GENERATIONS} --max_completion_length 12 --reasoner_max_new_tokens 12 "
        "--activation_checkpointing false --ddp_find_unused_parameters false --log_completions true "
        "--reasoner_pool sample"
    ).split()
    paths = [
        "--model_name_or_path",
        str(captioner),
        "--reasoner",
        f"hf:{reasoner}",
        oracle.spec,
        "--output_dir",
        str(out),
    ]
    command = [sys.executable, "-m", "accelerate.commands.launch", *launcher, *run, *paths, *flags]
    # no GPU even where there is one; one thread per rank, so 2 ranks (and their HF reasoners) share 2 cores
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}  # offline: tests/conftest.py
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]


def _log_steps(trainer_state: Path) -> list[dict]:
    return [h for h in json.loads(trainer_state.read_text())["log_history"] if "vpo/reward_mean" in h]


def _completions(out: Path, step: int) -> list[dict]:
    """The gathered completions table TRL writes for `step` (`--log_completions`): every rank's rows."""
    import pandas as pd

    return pd.read_parquet(out / "completions" / f"completions_{step:05d}.parquet").to_dict("records")


def _oracle_reads(rows: list[dict]) -> int:
    return sum(row["reasoner_answer"] == ORACLE_ANSWER for row in rows)


@pytest.fixture(scope="module")
def oracle():
    """The pool's second reasoner, served: it answers 3 to everything and counts the calls of both ranks."""
    model = ScriptedChatModel(respond=lambda messages: f"\\boxed{{{ORACLE_ANSWER}}}")
    with ScriptedOpenAIServer(model, model_name="oracle") as server:
        yield server


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, tiny_captioner_path, tiny_reasoner_path, oracle) -> tuple[Path, int]:
    """(output folder, the oracle's requests) of a two-step run on two processes."""
    out = tmp_path_factory.mktemp("vpo-ddp") / "run"
    before = oracle.requests
    _launch(tiny_captioner_path, tiny_reasoner_path, oracle, out)
    return out, oracle.requests - before


@pytest.mark.slow
def test_two_process_run_gathers_rewards_and_metrics_and_saves_once(two_process_run):
    out, oracle_requests = two_process_run
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    checkpoint = out / "checkpoint-2"
    # one RNG state per rank
    assert sorted(p.name for p in checkpoint.glob("rng_state*")) == ["rng_state_0.pth", "rng_state_1.pth"]
    assert (out / "model.safetensors").is_file()
    # rank 0 recorded the run, and the settings it resolved are those of 2 processes
    resolved = yaml.safe_load((out / "vpo_config.yaml").read_text())["resolved"]
    assert resolved["generation_batch_size"] == PER_DEVICE * PROCESSES
    assert resolved["reasoner_pool"] == "sample"

    steps = _log_steps(checkpoint / "trainer_state.json")
    assert [s["step"] for s in steps] == [1, 2]
    reads = 0
    for s in steps:
        rows = _completions(out, s["step"])
        assert len(rows) == PER_DEVICE * PROCESSES  # both ranks' captions, gathered
        assert s["vpo/reasoner_errors"] == 0 and s["vpo/reasoner_latency_s"] > 0
        # the logged rewards are over both ranks' captions (each rank logs the mean of its own 6)
        rewards = [row["reasoner_accuracy"] for row in rows]
        assert s["rewards/reasoner_accuracy/mean"] == pytest.approx(sum(rewards) / len(rewards))
        assert s["vpo/reward_mean"] == pytest.approx(sum(rewards) / len(rewards))
        # pool mode 'sample': one reasoner per group, the same on both ranks for the group they share
        groups = [rows[i : i + GENERATIONS] for i in range(0, len(rows), GENERATIONS)]
        for group in groups:
            assert len({str(row["prompt"]) for row in group}) == 1
            assert len({row["reasoner_answer"] == ORACLE_ANSWER for row in group}) == 1, group
        reads += _oracle_reads(rows)
    # each rank scored its own captions, once: the start-up check on each rank, then one call per caption it drew
    assert oracle_requests == PROCESSES + reads


@pytest.mark.slow
def test_two_process_run_resumes_from_its_last_checkpoint(
    two_process_run, tmp_path, tiny_captioner_path, tiny_reasoner_path, oracle
):
    run = tmp_path / "run"
    shutil.copytree(two_process_run[0], run)
    tables = {step: run / "completions" / f"completions_{step:05d}.parquet" for step in (1, 2)}
    first = {step: table.read_bytes() for step, table in tables.items()}
    before = oracle.requests
    resume = ["--max_steps", "3", "--resume_from_checkpoint", "latest"]
    _launch(tiny_captioner_path, tiny_reasoner_path, oracle, run, *resume)
    steps = _log_steps(run / "checkpoint-3" / "trainer_state.json")
    assert [s["step"] for s in steps] == [1, 2, 3]
    assert len(_completions(run, 3)) == PER_DEVICE * PROCESSES
    # steps 1-2 were not redone: their tables are untouched, and the reasoners read step 3's captions alone
    assert all(table.read_bytes() == first[step] for step, table in tables.items())
    assert oracle.requests - before == PROCESSES + _oracle_reads(_completions(run, 3))


# --- the shipped launcher configs, as `accelerate launch` reads them (no GPU, no DeepSpeed needed) ---

ZERO_OFFLOAD_DEVICES = {"none", "cpu", "nvme"}


def _launch_args(name: str):
    """`accelerate launch --config_file training/accelerate/NAME -m training.vpo`, validated as accelerate does."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args = launch_command_parser().parse_args(["--config_file", str(ACCELERATE / name), "-m", "training.vpo"])
    return _validate_launch_command(args)


def _deepspeed_plugin(name: str):
    """The `DeepSpeedPlugin` each process of a launch with `name` builds (from the environment the launcher sets)."""
    from accelerate.utils import DeepSpeedPlugin
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    args, defaults, mixed_precision_from_config = _launch_args(name)
    assert args.use_deepspeed
    fields = list(defaults.deepspeed_config) + (["mixed_precision"] if mixed_precision_from_config else [])
    args.deepspeed_fields_from_accelerate_config = ",".join(fields)  # as `accelerate launch` sets it
    _, env = prepare_deepspeed_cmd_env(args)
    with mock.patch.dict(os.environ, {k: v for k, v in env.items() if k.startswith("ACCELERATE_")}):
        plugin = DeepSpeedPlugin()
    plugin.set_mixed_precision(env["ACCELERATE_MIXED_PRECISION"])  # as `Accelerator` does
    return plugin


@pytest.mark.parametrize("name, stage", [("zero2.yaml", 2), ("zero3.yaml", 3)])
def test_deepspeed_configs_build_the_plugin_they_promise(name, stage):
    import dataclasses

    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.utils import DeepSpeedPlugin
    from accelerate.utils.constants import DEEPSPEED_MULTINODE_LAUNCHERS
    from accelerate.utils.deepspeed import HfDeepSpeedConfig

    raw = ClusterConfig.from_yaml_file(ACCELERATE / name).deepspeed_config
    # every key is a DeepSpeedPlugin field or a launcher setting, with a value DeepSpeed takes
    # (the plugin itself checks none of them: a zero_stage of 7 or an offload to "gpu" would pass)
    plugin_fields = {f.name for f in dataclasses.fields(DeepSpeedPlugin)}
    assert set(raw) <= plugin_fields | {"deepspeed_multinode_launcher"}
    assert raw["zero_stage"] in (0, 1, 2, 3)
    assert {raw["offload_optimizer_device"], raw["offload_param_device"]} <= ZERO_OFFLOAD_DEVICES
    assert all(isinstance(raw[k], bool) for k in raw if k.startswith("zero3_"))
    assert raw["deepspeed_multinode_launcher"] in DEEPSPEED_MULTINODE_LAUNCHERS

    plugin = _deepspeed_plugin(name)
    ds = plugin.deepspeed_config
    assert plugin.zero_stage == ds["zero_optimization"]["stage"] == stage
    assert ds["bf16"] == {"enabled": True} and ds["fp16"] == {"enabled": False}
    zero = ds["zero_optimization"]
    assert zero["offload_optimizer"]["device"] == zero["offload_param"]["device"] == "none"
    # the batch sizes and clipping are left to the trainer ("auto": filled in from GRPOConfig)
    auto = {k for k, v in ds.items() if v == "auto"}
    assert auto == {
        "train_batch_size",
        "train_micro_batch_size_per_gpu",
        "gradient_accumulation_steps",
        "gradient_clipping",
    }
    parsed = HfDeepSpeedConfig(ds)
    assert parsed.is_zero3() == (stage == 3) and not parsed.is_offload()
    if stage == 3:  # checkpoints as consolidated 16-bit weights, loadable by hf:PATH and vllm serve
        assert plugin.zero3_init_flag and zero["stage3_gather_16bit_weights_on_model_save"]


@pytest.mark.parametrize("name, processes, precision", [("ddp.yaml", 8, "bf16"), ("cpu_2proc.yaml", 2, "no")])
def test_data_parallel_configs_take_the_torchrun_launcher(name, processes, precision):
    args, defaults, _ = _launch_args(name)
    # `multi_gpu` is accelerate's torchrun launcher: one process each (on the CPU where no GPU is visible)
    assert args.multi_gpu and not args.use_deepspeed and not args.cpu and not defaults.deepspeed_config
    assert (args.num_processes, args.num_machines, args.mixed_precision) == (processes, 1, precision)


def test_accelerate_cpu_flag_alone_would_start_one_process():
    """Why `cpu_2proc.yaml` exists: `--cpu --num_processes 2` takes the simple launcher, which starts one
    process (more need mpirun), so the run would silently train on one."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args = launch_command_parser().parse_args(["--cpu", "--num_processes", "2", "-m", "training.vpo"])
    args, _, _ = _validate_launch_command(args)
    assert args.cpu and not args.multi_gpu and args.mpirun_hostfile is None  # -> simple_launcher: one process
