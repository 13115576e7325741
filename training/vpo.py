"""`python -m training.vpo`: Visual Perception Optimization (GRPO on the captioner) with TRL.

    python -m training.vpo --config training/recipes/single_gpu_lora.yaml --learning_rate 2e-6
    accelerate launch --config_file training/accelerate/zero3.yaml -m training.vpo --config training/recipes/paper.yaml

Settings are TRL's (`trl.GRPOConfig`, `trl.ModelConfig`: the captioner is `--model_name_or_path`,
LoRA is `--use_peft`) plus RAPID's (`training.config.VPOConfig`), read by `trl.TrlParser`: a YAML
`--config`, then flags. The policy prompt is the preset's captioning prompt; the rewards are
`training.reward.GraphReward` over the same RAPID graph the library and evals run (one reasoner or
a pool), the leak check of `training.guards` and, if asked, a describe check and a length term.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from transformers import TrainerCallback
from trl import ModelConfig

from rapid_agent import build_rapid_graph
from rapid_agent.errors import BackendError, ConfigError, RapidError
from rapid_agent.models.identity import model_identity
from rapid_agent.models.served import ServedChatModel, precheck
from rapid_agent.models.spec import ModelResolver, ModelSpec
from training.config import VPOConfig, parse_args, policy_path, save_run_config
from training.data import filter_by_difficulty, load_training_data
from training.guards import DescribeCheck, LeakPenalty
from training.image_checks import install_image_checks
from training.reward import GraphReward, PoolReasoner, caption_length

INFO_LOGGERS = ("training", "rapid_agent", "evals")
"""The project's loggers log at INFO; every other library at WARNING (HTTP clients log each request at INFO)."""


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    for name in INFO_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    try:
        config, model_args = parse_args(argv)
        train(config, model_args, argv=argv)
    except RapidError as exc:
        print(f"training.vpo: error: {exc}", file=sys.stderr)
        return 2
    return 0


def train(config: VPOConfig, model_args: ModelConfig, *, reasoners: Sequence[BaseChatModel] | None = None,
          train_dataset=None, argv: Sequence[str] | None = None, callbacks: Sequence[TrainerCallback] = ()):
    """Build the trainer, train (resuming if asked), save the final weights in `output_dir`."""
    trainer = build_trainer(config, model_args, reasoners=reasoners, train_dataset=train_dataset, argv=argv,
                            callbacks=callbacks)
    resume = config.resume_from_checkpoint
    trainer.train(resume_from_checkpoint=True if resume == "latest" else resume)
    trainer.save_model(config.output_dir)
    return trainer


def build_trainer(config: VPOConfig, model_args: ModelConfig, *, reasoners: Sequence[BaseChatModel] | None = None,
                  train_dataset=None, argv: Sequence[str] | None = None, callbacks: Sequence[TrainerCallback] = ()):
    """A `trl.GRPOTrainer` for `config`; every check that can fail runs before the first step.

    `reasoners` (chat models, one per `config.reasoner`) replace the specs; `train_dataset`
    replaces `config.dataset_name` (rows as `training.data` builds them); `callbacks` are added to
    the trainer's (as `GRPOTrainer(callbacks=...)` takes them).
    """
    from trl import GRPOTrainer

    if config.use_vllm and importlib.util.find_spec("vllm") is None:
        raise ConfigError("use_vllm needs vLLM: pip install 'rapid-agent[vllm]', or roll out with --use_vllm false")
    if reasoners is not None and len(reasoners) != len(config.reasoner):
        raise ConfigError(f"{len(reasoners)} reasoner models for {len(config.reasoner)} reasoner specs")
    resolver = ModelResolver(generation={"reasoner": config.reasoner_generation()})
    models = [resolver.resolve(r, "reasoner") for r in (reasoners if reasoners is not None else config.reasoner)]
    pool = [PoolReasoner(name, model, weight, identity=model_identity(spec) if reasoners is None else "")
            for name, model, weight, spec in zip(pool_names(config.reasoner), models, config.pool_weights(),
                                                 config.reasoner, strict=True)]
    roles = ["reasoner"] if len(pool) == 1 else [f"reasoner {r.name}" for r in pool]
    precheck([(role, r.model) for role, r in zip(roles, pool, strict=True)], dict.fromkeys(roles, "--reasoner_max_new_tokens"))
    graph = build_rapid_graph(
        reasoner=models[0],
        prompt_preset=config.prompt_preset,
        resolver=resolver,
        # a served reasoner bounds each request itself (and so can tell a hung server from a slow call)
        call_timeout_s=None if all(isinstance(m, ServedChatModel) for m in models) else config.reasoner_timeout_s,
    )
    # the main process downloads, extracts and measures pass rates first; the others then read its caches
    with config.main_process_first(desc="VPO training data"):
        dataset = train_dataset if train_dataset is not None else load_training_data(config)
        if config.startup_check:
            for member in pool:
                check_reasoner(graph, dataset[0], member)
        if config.difficulty_filter:
            dataset = filter_by_difficulty(dataset, config, model_args, pool)

    reward_funcs: list[Any] = [
        GraphReward(graph, pool=pool, pool_mode=config.reasoner_pool, samples=config.reasoner_samples,
                    concurrency=config.reasoner_concurrency, failed_reward=config.failed_reward, seed=config.seed),
        LeakPenalty(),
    ]
    if config.describe_check:
        judge = ModelResolver(generation={"reasoner": config.reasoner_generation()}).resolve(config.describe_check, "reasoner")
        reward_funcs.append(DescribeCheck(judge, concurrency=config.reasoner_concurrency))
    if config.length_penalty > 0:
        reward_funcs.append(functools.partial(caption_length, max_tokens=config.max_completion_length))
    if config.should_save:
        save_run_config(config, model_args, argv)
    config.model_init_kwargs = model_init_kwargs(config, model_args)
    trainer = GRPOTrainer(
        model=policy_path(model_args),
        reward_funcs=reward_funcs,
        args=config,
        train_dataset=dataset,
        peft_config=peft_config(model_args),
        callbacks=list(callbacks) or None,
    )
    return install_image_checks(trainer, dataset)  # TRL's VLM image-token bugs, refused before and during training


def model_init_kwargs(config: VPOConfig, model_args: ModelConfig) -> dict[str, Any]:
    """`from_pretrained` arguments of the policy, as TRL's scripts build them (the run's precision by default)."""
    import torch

    if isinstance(config.model_init_kwargs, dict):
        return config.model_init_kwargs
    default = "float32" if not config.bf16 else "bfloat16"
    dtype = model_args.dtype if model_args.dtype not in (None, "float32") else default
    return {"revision": model_args.model_revision, "attn_implementation": model_args.attn_implementation,
            "dtype": dtype if dtype == "auto" else getattr(torch, dtype)}


LORA_DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
"""LoRA targets when none are named: the language model's attention (Qwen2.5-VL's names; its vision tower's differ)."""


def peft_config(model_args: ModelConfig):
    """TRL's `get_peft_config`, targeting `LORA_DEFAULT_TARGETS` when no target is named (None: full fine-tuning)."""
    from trl import get_peft_config

    if model_args.use_peft and model_args.lora_target_modules is None and model_args.lora_target_parameters is None:
        model_args = dataclasses.replace(model_args, lora_target_modules=LORA_DEFAULT_TARGETS)
    return get_peft_config(model_args)


def pool_names(specs: Sequence[str]) -> list[str]:
    """Short metric names of the pool's reasoners (the model's last path part), made unique."""
    names = []
    for spec in specs:
        try:
            name = Path(ModelSpec.parse(spec).model.rstrip("/")).name or spec
        except ConfigError:
            name = spec
        names.append(name if name not in names else f"{name}-{len(names)}")
    return names


def check_reasoner(graph, row: dict[str, Any], member: PoolReasoner) -> None:
    """One synchronous reward-graph call on a real row, so a dead reasoner fails before training."""
    from rapid_agent import RapidContext

    probe = {"question": row["question"], "options": row["options"] or None, "captions": ["(start-up check)"]}
    try:
        graph.invoke(probe, context=RapidContext(reasoner=member.model))
    except RapidError as exc:
        raise BackendError(f"reasoner {member.name} did not answer the start-up check: {exc}") from None


if __name__ == "__main__":
    sys.exit(main())
