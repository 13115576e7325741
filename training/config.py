"""`VPOConfig`: TRL's `GRPOConfig` plus RAPID's own settings (reasoners, prompts, data, reward guards).

Every GRPO option TRL documents is a field here under TRL's name (it is inherited, not copied); the
captioner and LoRA come from TRL's `ModelConfig` (`model_name_or_path`, `use_peft`, `lora_r`, ...).
`parse_args` reads them the way TRL's own scripts do: `TrlParser`, a YAML `--config` (the recipes
in `training/recipes/`), then flags. Values that cannot work are a `ConfigError` naming the field.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from trl import GRPOConfig, ModelConfig, TrlParser

from rapid_agent.errors import ConfigError
from rapid_agent.models.local import LOCAL_PROVIDERS
from rapid_agent.models.spec import GenerationSettings, ModelSpec
from rapid_agent.prompts import get_preset

RECIPES = Path(__file__).resolve().parent / "recipes"
PAPER_CAPTIONER = "Qwen/Qwen2.5-VL-3B-Instruct"
PAPER_REASONER = "openai:deepseek-ai/DeepSeek-R1-Distill-Qwen-7B@http://127.0.0.1:8001/v1"


@dataclass
class VPOConfig(GRPOConfig):
    """One VPO run: TRL's GRPO settings (inherited) and RAPID's reward environment (below).

    On a machine without CUDA, `use_cpu` is set and `bf16` defaults to off (fp32), unless given.
    """

    # the reward environment: the RAPID graph and its reasoner(s)
    reasoner: list[str] = field(
        default_factory=lambda: [PAPER_REASONER],
        metadata={"help": "Frozen reasoner spec(s): openai:MODEL@URL (vllm serve), hf:ID_OR_PATH, miniworld:NAME, "
                  "tiny. Several (`--reasoner A B` or `--reasoner A --reasoner B`) form a pool."},
    )
    reasoner_weights: list[float] | None = field(
        default=None, metadata={"help": "One weight per pool reasoner (default: equal)."}
    )
    reasoner_pool: Literal["all", "sample"] = field(
        default="all",
        metadata={"help": "'all': every caption is read by every pool reasoner (reward = weighted mean accuracy); "
                  "'sample': one reasoner, drawn by weight, per prompt group (the cost of one reasoner)."},
    )
    prompt_preset: str = field(default="paper-train", metadata={"help": "Prompt preset of the policy and the reward graph."})
    reasoner_samples: int = field(default=1, metadata={"help": "Reasoner samples per caption; the reward is their mean accuracy."})
    reasoner_temperature: float = field(default=1.0, metadata={"help": "Reasoner sampling temperature."})
    reasoner_top_p: float = field(default=1.0, metadata={"help": "Reasoner nucleus sampling."})
    reasoner_max_new_tokens: int = field(default=4096, metadata={"help": "Reasoner token budget (fitted to a served context)."})
    reasoner_timeout_s: float = field(
        default=600.0,
        metadata={"help": "Bound on one reasoner call, counting time queued on the server (then retried; a served "
                  "reasoner that completes no call for 2 timeouts counts as hung and its calls fail at once)."},
    )
    reasoner_concurrency: int = field(default=64, metadata={"help": "Concurrent calls per reasoner (local HF: micro-batch size)."})
    reasoner_batch_wait_s: float = field(default=0.1, metadata={"help": "Local HF reasoner: how long to gather calls into one generate."})
    failed_reward: float | None = field(
        default=None, metadata={"help": "Reward of a caption whose reasoner calls all failed; None leaves it out of the loss."}
    )
    answer_type: str = field(default="auto", metadata={"help": "Grader answer type for rows without one (rapid_agent.answers)."})
    startup_check: bool = field(default=True, metadata={"help": "Call each reasoner once before training; fail early if one cannot answer."})

    # reward guards and extra terms (each a TRL reward function; its weight below, its mean logged on its own)
    leak_penalty: float = field(
        default=1.0,
        metadata={"help": "Weight of the leak check: a caption that states a final answer (\\boxed{}, 'the answer is', "
                  "an option letter as the answer) loses this much. 0 keeps logging the leak rate only."},
    )
    describe_check: str | None = field(
        default=None, metadata={"help": "Model spec that judges whether each caption describes the image (off by default)."}
    )
    describe_penalty: float = field(default=0.1, metadata={"help": "Lost by a caption the describe check rejects (the authors: 0.1)."})
    length_penalty: float = field(default=0.0, metadata={"help": "Weight of the -tokens/max_completion_length term."})

    # data
    dataset_name: str = field(default="TIGER-Lab/ViRL39K", metadata={"help": "'demo', 'miniworld', a Hub dataset id, or a local .parquet/.jsonl file."})
    dataset_train_split: str = field(default="train", metadata={"help": "Split of a Hub dataset."})
    image_root: str | None = field(default=None, metadata={"help": "Folder that relative image paths start from (default: the file's)."})
    max_samples: int | None = field(default=None, metadata={"help": "Keep only the first N rows."})
    drop_sources: list[str] = field(default_factory=lambda: ["DeepScaleR"], metadata={"help": "Drop rows whose `source` is one of these."})
    difficulty_filter: bool = field(default=False, metadata={"help": "Drop rows the captioner + reasoner pool always/never solves."})
    filter_samples: int = field(default=4, metadata={"help": "Samples per row and reasoner to estimate its pass rate."})
    pass_rate_cache: str | None = field(default=None, metadata={"help": "JSONL cache of pass rates (default: OUTPUT_DIR/pass_rates.jsonl)."})

    def __post_init__(self) -> None:
        import torch

        if not torch.cuda.is_available():
            self.use_cpu = True
            self.bf16 = bool(self.bf16)  # None (TRL: bf16) -> fp32 on a CPU
        self.output_dir = self.output_dir or "runs/vpo"
        if self.reward_weights is not None:
            raise ValueError("reward_weights is set by VPO from leak_penalty, describe_penalty and length_penalty")
        super().__post_init__()
        self._check_rapid_fields()
        self.reward_weights = [weight for _, weight in self.reward_terms()]

    def _check_rapid_fields(self) -> None:
        from rapid_agent.answers import ANSWER_TYPES

        if not self.reasoner:
            raise ValueError("reasoner: name at least one reasoner")
        if self.reasoner_weights is not None and (
            len(self.reasoner_weights) != len(self.reasoner) or min(self.reasoner_weights) < 0 or sum(self.reasoner_weights) <= 0
        ):
            raise ValueError(
                f"reasoner_weights: {len(self.reasoner_weights)} weights for {len(self.reasoner)} reasoners; "
                "give one non-negative weight per reasoner, not all zero"
            )
        try:
            preset = get_preset(self.prompt_preset)
        except ConfigError as exc:
            raise ValueError(f"prompt_preset: {exc}") from None
        if preset.uses_tentative:
            raise ValueError(f"prompt_preset {self.prompt_preset!r} needs a tentative answer from the captioner; VPO rewards captions alone")
        positive = {"reasoner_samples": self.reasoner_samples, "reasoner_max_new_tokens": self.reasoner_max_new_tokens,
                    "reasoner_timeout_s": self.reasoner_timeout_s, "reasoner_concurrency": self.reasoner_concurrency,
                    "reasoner_top_p": self.reasoner_top_p, "filter_samples": self.filter_samples - 1,
                    "max_samples": self.max_samples or 1}
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be {'at least 2' if name == 'filter_samples' else 'positive'}, got {getattr(self, name)}")
        for name in ("reasoner_temperature", "reasoner_batch_wait_s", "leak_penalty", "describe_penalty", "length_penalty"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.reasoner_samples > 1 and self.reasoner_temperature == 0:
            raise ValueError("reasoner_samples > 1 at reasoner_temperature 0 averages identical answers; raise the temperature")
        if self.answer_type not in ANSWER_TYPES:
            raise ValueError(f"answer_type must be one of {sorted(ANSWER_TYPES)}, got {self.answer_type!r}")

    def reward_terms(self) -> list[tuple[str, float]]:
        """(reward function name, TRL reward weight) in the order `training.vpo` builds them."""
        terms = [("reasoner_accuracy", 1.0), ("leak_penalty", self.leak_penalty)]
        terms += [("describe_check", self.describe_penalty)] if self.describe_check else []
        terms += [("caption_length", self.length_penalty)] if self.length_penalty > 0 else []
        return terms

    def pool_weights(self) -> list[float]:
        """The pool's weights, normalised to sum to 1."""
        weights = self.reasoner_weights or [1.0] * len(self.reasoner)
        return [w / sum(weights) for w in weights]

    def captioner_generation(self) -> GenerationSettings:
        """Caption sampling settings outside TRL (difficulty filtering): the policy's own."""
        return GenerationSettings(
            temperature=self.temperature, top_p=self.top_p, max_new_tokens=self.max_completion_length,
            max_batch_size=self.reasoner_concurrency,
        )

    def reasoner_generation(self) -> GenerationSettings:
        """Decoding settings of the reasoner(s) during training (reward and difficulty filtering)."""
        return GenerationSettings(
            temperature=self.reasoner_temperature, top_p=self.reasoner_top_p,
            max_new_tokens=self.reasoner_max_new_tokens, timeout_s=self.reasoner_timeout_s,
            max_batch_size=self.reasoner_concurrency, max_wait_s=self.reasoner_batch_wait_s,
        )

    @property
    def pass_rate_cache_path(self) -> Path:
        return Path(self.pass_rate_cache) if self.pass_rate_cache else Path(self.output_dir) / "pass_rates.jsonl"


def policy_spec(model_name_or_path: str | None) -> ModelSpec:
    """The captioner (`ModelConfig.model_name_or_path`) as a local model spec: a spec of a local provider
    (`hf:`, `tiny`, `miniworld:NAME`) as given, anything else as `hf:` (a Hub id or folder)."""
    name = model_name_or_path or PAPER_CAPTIONER
    try:
        spec = ModelSpec.parse(name)
        if spec.provider in LOCAL_PROVIDERS:
            return spec
    except ConfigError:
        pass
    return ModelSpec(provider="hf", model=name)


def policy_path(model_args: ModelConfig) -> str:
    """The policy's Hub id or folder, as `from_pretrained` takes it."""
    spec = policy_spec(model_args.model_name_or_path)
    return str(spec.local_path("captioner") or spec.model)


def recipe(name: str) -> dict[str, Any]:
    """The values of the recipe `training/recipes/NAME.yaml` (paper, eight_gpu, single_gpu_lora, miniworld)."""
    path = RECIPES / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in RECIPES.glob("*.yaml")))
        raise ConfigError(f"unknown recipe {name!r}; known: {known}")
    return yaml.safe_load(path.read_text())


def parse_args(argv: Sequence[str] | None = None) -> tuple[VPOConfig, ModelConfig]:
    """`--config RECIPE.yaml` then flags, in TRL's spelling, into (VPOConfig, ModelConfig).

    Unknown keys, bad values and impossible combinations raise `ConfigError` naming them.
    """
    args = _merge_repeated(list(sys.argv[1:] if argv is None else argv), "--reasoner")
    _check_config_file(args)
    parser = TrlParser((VPOConfig, ModelConfig), prog="python -m training.vpo")
    try:
        config, model_args, unknown = parser.parse_args_and_config(args, return_remaining_strings=True)
    except ValueError as exc:  # TRL's and transformers' own checks, and ours in __post_init__
        raise ConfigError(f"invalid VPO config: {exc}") from None
    if unknown:
        raise ConfigError(f"unknown flag(s) or value(s): {' '.join(unknown)} (python -m training.vpo --help lists them)")
    model_args.model_name_or_path = model_args.model_name_or_path or PAPER_CAPTIONER
    return config, model_args


def _merge_repeated(args: list[str], flag: str) -> list[str]:
    """`--reasoner A --reasoner B` -> `--reasoner A B` (argparse keeps only the last of a repeated flag)."""
    values, rest, i = [], [], 0
    while i < len(args):
        if args[i] == flag:
            i += 1
            while i < len(args) and not args[i].startswith("--"):
                values.append(args[i])
                i += 1
        else:
            rest.append(args[i])
            i += 1
    return rest + ([flag, *values] if values else [])


def _check_config_file(args: list[str]) -> None:
    """A missing, unreadable or non-mapping `--config` file, or an unknown key in it, as a `ConfigError`."""
    if "--config" not in args:
        return
    index = args.index("--config")
    if index + 1 >= len(args):
        raise ConfigError("--config needs a YAML file")
    path = Path(args[index + 1])
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings, got {type(data).__name__}")
    known = {f.name for cls in (VPOConfig, ModelConfig) for f in dataclasses.fields(cls)} | {"env"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"config file {path}: unknown key(s) {', '.join(unknown)}")


def save_run_config(config: VPOConfig, model_args: ModelConfig, argv: Sequence[str] | None) -> Path:
    """Record the run's command and every resolved setting in `OUTPUT_DIR/vpo_config.yaml`."""
    path = Path(config.output_dir) / "vpo_config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    resolved: dict[str, Any] = {**config.to_dict(), **dataclasses.asdict(model_args)}
    record = {"command": ["python", "-m", "training.vpo", *(argv if argv is not None else sys.argv[1:])],
              "resolved": {k: v for k, v in resolved.items() if not k.startswith("_")}}
    path.write_text(yaml.safe_dump(record, sort_keys=False))
    return path
