"""`python -m training.vpo`: Visual Perception Optimization (GRPO on the captioner) with TRL.

    python -m training.vpo --config my_run.yaml --learning-rate 2e-6 --use-lora
    accelerate launch --config_file training/accelerate/zero3.yaml -m training.vpo --preset paper

Every `VPOConfig` field is a flag (`--max-steps 10`, `--use-lora` / `--no-use-lora`,
`--lora-target-modules q_proj v_proj`, `--max-samples none`); flags override `--config`, which
overrides the preset. The policy prompt is the preset's captioning prompt; the reward is
`training.reward.GraphReward` over the same RAPID graph the library and evals run.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import logging
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel

from rapid_agent import build_rapid_graph
from rapid_agent.errors import BackendError, ConfigError, RapidError
from rapid_agent.models.served import ServedChatModel, precheck
from rapid_agent.models.spec import ModelResolver
from training.config import (
    DIFFERS_FROM_PAPER,
    PAPER,
    VPOConfig,
    load_yaml,
    make_config,
    save_yaml,
    world_size,
)
from training.data import filter_by_difficulty, load_training_data
from training.reward import GraphReward, caption_length

# ---------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """The CLI: `--config FILE` plus one flag per `VPOConfig` field (all default to 'not given')."""
    parser = argparse.ArgumentParser(
        prog="python -m training.vpo", description=__doc__.split("\n\n")[0], argument_default=argparse.SUPPRESS
    )
    parser.add_argument("--config", help="YAML file of VPOConfig fields (flags override it)")
    for name, field in VPOConfig.model_fields.items():
        help_text = _help(name, field.description, field.default)
        kind, optional = _base_type(field.annotation)
        flags = [f"--{name.replace('_', '-')}"]
        if kind is bool and not optional:
            parser.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction, help=help_text)
            continue
        flags += [f"--{name}"] if "_" in name else []  # TRL's spelling too
        if kind is list:
            parser.add_argument(*flags, dest=name, nargs="+", metavar="VALUE", help=help_text)
        else:
            parser.add_argument(*flags, dest=name, metavar=name.upper(), help=help_text)
    return parser


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """(the non-None type, whether None is allowed) of a field annotation."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return _base_type(rest[0])[0], True
    return typing.get_origin(annotation) or annotation, False


def _help(name: str, description: str | None, default: Any) -> str:
    text = f"{description or ''} (default: {default!r}".lstrip()
    if name in PAPER and PAPER[name] != default:
        text += f"; paper: {PAPER[name]!r}, because {DIFFERS_FROM_PAPER.get(name, 'see docs/training.md')}"
    return text.replace("%", "%%") + ")"


def parse_config(argv: Sequence[str] | None = None) -> VPOConfig:
    """Preset ← YAML ← flags, validated; raises `ConfigError` naming every bad field."""
    args = vars(build_parser().parse_args(argv))
    values = load_yaml(args.pop("config")) if "config" in args else {}
    for name, value in args.items():
        _, optional = _base_type(VPOConfig.model_fields[name].annotation)
        values[name] = None if optional and isinstance(value, str) and value.lower() in ("none", "null") else value
    return make_config(values)


INFO_LOGGERS = ("training", "rapid_agent", "evals")
"""The project's loggers log at INFO; every other library at WARNING (HTTP clients log each request at INFO)."""


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    for name in INFO_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    try:
        train(parse_config(argv))
    except RapidError as exc:
        print(f"training.vpo: error: {exc}", file=sys.stderr)
        return 2
    return 0


# ------------------------------------------------------------------------------------------- build


def train(config: VPOConfig, *, reasoner: BaseChatModel | None = None, train_dataset=None):
    """Build the trainer, train (resuming if asked), save the final weights in `output_dir`."""
    trainer = build_trainer(config, reasoner=reasoner, train_dataset=train_dataset)
    resume = config.resume_from_checkpoint
    trainer.train(resume_from_checkpoint=True if resume == "latest" else resume)
    trainer.save_model(config.output_dir)
    return trainer


def build_trainer(config: VPOConfig, *, reasoner: BaseChatModel | None = None, train_dataset=None):
    """A `trl.GRPOTrainer` for `config`; every check that can fail runs before the first step.

    `reasoner` (a chat model) replaces `config.reasoner`; `train_dataset` replaces `config.dataset`
    (rows as `training.data` builds them).
    """
    from trl import GRPOTrainer

    config.check_batch(world_size())
    if config.use_vllm and importlib.util.find_spec("vllm") is None:
        raise ConfigError("use_vllm needs vLLM: pip install 'rapid-agent[vllm]', or roll out with --no-use-vllm")
    weights = [1.0] + ([config.length_penalty] if config.length_penalty > 0 else [])
    args = grpo_args(config, reward_weights=weights)
    resolver = ModelResolver(generation={"reasoner": config.reasoner_generation()})
    reasoner_model = resolver.resolve(reasoner if reasoner is not None else config.reasoner, "reasoner")
    precheck([("reasoner", reasoner_model)], {"reasoner": "--reasoner-max-new-tokens"})
    served = isinstance(reasoner_model, ServedChatModel)
    graph = build_rapid_graph(
        reasoner=reasoner_model,
        prompt_preset=config.prompt_preset,
        resolver=resolver,
        # a served reasoner bounds each request itself (and so can tell a hung server from a slow call)
        call_timeout_s=None if served else config.reasoner_timeout_s,
    )
    # the main process downloads, extracts and measures pass rates first; the others then read its caches
    with args.main_process_first(desc="VPO training data"):
        dataset = train_dataset if train_dataset is not None else load_training_data(config)
        if config.startup_check:
            check_reasoner(graph, dataset[0], config.reasoner if reasoner is None else type(reasoner).__name__)
        if config.difficulty_filter:
            dataset = filter_by_difficulty(dataset, config, reasoner_model)

    reward_funcs: list[Any] = [
        GraphReward(
            graph,
            samples=config.reasoner_samples,
            concurrency=config.reasoner_concurrency,
            failed_reward=config.failed_reward,
        )
    ]
    if config.length_penalty > 0:
        reward_funcs.append(functools.partial(caption_length, max_tokens=config.max_completion_length))
    if args.should_save:
        save_yaml(config, f"{config.output_dir}/vpo_config.yaml")
    return GRPOTrainer(
        model=config.captioner_path(),
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=dataset,
        peft_config=lora_config(config),
    )


def check_reasoner(graph, row: dict[str, Any], name: str) -> None:
    """One synchronous reward-graph call on a real row, so a dead reasoner fails before training."""
    probe = {"question": row["question"], "options": row["options"] or None, "captions": ["(start-up check)"]}
    try:
        graph.invoke(probe)
    except RapidError as exc:
        raise BackendError(f"reasoner {name} did not answer the start-up check: {exc}") from None


def grpo_args(config: VPOConfig, *, reward_weights: list[float]):
    """TRL's `GRPOConfig` for `config`."""
    import torch
    from trl import GRPOConfig

    cuda = torch.cuda.is_available()
    bf16 = config.bf16 if config.bf16 is not None else cuda and torch.cuda.is_bf16_supported()
    names = [
        "num_generations", "per_device_train_batch_size", "gradient_accumulation_steps", "steps_per_generation",
        "num_iterations", "learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay", "max_grad_norm",
        "beta", "epsilon", "epsilon_high", "loss_type", "scale_rewards", "temperature", "top_p",
        "max_completion_length", "num_train_epochs", "max_steps", "save_steps", "save_total_limit",
        "logging_steps", "seed", "gradient_checkpointing", "log_completions", "report_to", "output_dir",
        "use_vllm", "vllm_mode", "vllm_server_base_url", "vllm_gpu_memory_utilization", "vllm_tensor_parallel_size",
    ]
    return GRPOConfig(
        **{name: getattr(config, name) for name in names},
        reward_weights=reward_weights,
        bf16=bf16,
        use_cpu=not cuda,
        model_init_kwargs={"dtype": torch.bfloat16 if bf16 else torch.float32},
        remove_unused_columns=False,
        save_strategy="steps",
    )


def lora_config(config: VPOConfig):
    """A peft `LoraConfig` when `use_lora`, else None (full fine-tuning)."""
    if not config.use_lora:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules,
        task_type="CAUSAL_LM",
    )


if __name__ == "__main__":
    sys.exit(main())
