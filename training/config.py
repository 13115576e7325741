"""`VPOConfig`: every setting of a VPO run, typed, with the paper's values as the `paper` preset.

Values come from (later wins): field defaults, the preset (`preset: paper`), a YAML file, flags.
Unknown keys are refused. The defaults suit one GPU; `PAPER` holds the paper's values
(rapid.md §5) and `DIFFERS_FROM_PAPER` says why a default departs from them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rapid_agent.answers import AnswerType
from rapid_agent.errors import ConfigError
from rapid_agent.miniworld import WEIGHTS_DIR as MINIWORLD_WEIGHTS
from rapid_agent.models.local import LOCAL_PROVIDERS
from rapid_agent.models.spec import GenerationSettings, ModelSpec
from rapid_agent.prompts import get_preset

LossType = Literal["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"]

PAPER: dict[str, Any] = {
    "captioner": "Qwen/Qwen2.5-VL-3B-Instruct",
    "reasoner": "openai:deepseek-ai/DeepSeek-R1-Distill-Qwen-7B@http://127.0.0.1:8001/v1",
    "num_generations": 4,
    # 256 prompts x 4 captions per rollout, 2 updates of 128 prompts each, on 8 processes:
    # 8 captions x 8 processes x 8 accumulation = 512 per update, 16 micro-steps per rollout.
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 8,
    "steps_per_generation": 16,
    "num_iterations": 1,
    "learning_rate": 1e-6,
    "lr_scheduler_type": "constant",
    "weight_decay": 0.01,
    "max_grad_norm": 1.0,
    "beta": 0.001,
    "epsilon": 0.2,
    "loss_type": "dapo",  # token-mean over the whole update batch (verl's "token-mean")
    "temperature": 1.0,
    "top_p": 1.0,
    "max_completion_length": 8192,
    "reasoner_samples": 1,
    "reasoner_temperature": 1.0,
    "reasoner_max_new_tokens": 8192,
    "num_train_epochs": 20,
    "save_steps": 100,  # the paper saves every 50 rollouts of 2 updates each
    "use_lora": False,
    "gradient_checkpointing": True,
}

# The miniature world (rapid_agent.miniworld, trained by `python -m training.miniworld`): a tiny captioner on a
# CPU, the shipped SFT captioner as the policy and the shipped small reasoner frozen, greedy, as the reward.
MINIWORLD: dict[str, Any] = {
    "captioner": "hf:" + str(MINIWORLD_WEIGHTS / "captioner-sft"),
    "reasoner": "miniworld:reasoner-small",
    "dataset": "miniworld",
    "max_samples": 4000,
    "num_generations": 8,
    "per_device_train_batch_size": 64,  # 8 charts x 8 captions per update
    "learning_rate": 1e-4,
    "lr_scheduler_type": "constant",
    "beta": 0.1,  # the KL to the SFT captioner keeps its digit reading (beta 0 at 2e-4: reading collapsed)
    "loss_type": "dapo",
    "temperature": 0.7,  # at 1.0 misread digits drown the signal of which bars a caption names
    "max_completion_length": 48,
    "reasoner_temperature": 0.0,
    "reasoner_max_new_tokens": 64,
    "max_steps": 200,
    "save_steps": 10_000,
    "gradient_checkpointing": False,
    "startup_check": False,
}

DIFFERS_FROM_PAPER: dict[str, str] = {
    "gradient_accumulation_steps": "the paper's batch of 256 prompts needs 8 GPUs; one GPU takes 8 captions per update",
    "steps_per_generation": "one rollout per update on one GPU (TRL's default) instead of 2 updates per rollout",
    "max_completion_length": "captions rarely pass 1k tokens; 8k reserves memory for nothing on one GPU",
    "reasoner_max_new_tokens": "R1-style reasoners mostly finish within 4k tokens; halves the worst-case reward latency",
    "num_train_epochs": "the paper's 20 epochs take days on 8 GPUs; set it (or max_steps) for your budget",
    "save_steps": "checkpoint every 50 optimizer updates (the paper: every 50 rollouts of 2 updates)",
}


class VPOConfig(BaseModel):
    """One VPO run: models, data, reward, GRPO hyper-parameters, LoRA, vLLM rollouts, output."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    preset: Literal["default", "paper", "miniworld"] = Field(
        "default", description="'paper' fills unset fields from PAPER, 'miniworld' from MINIWORLD."
    )

    # models
    captioner: str = Field(
        "Qwen/Qwen2.5-VL-3B-Instruct",
        description="Policy: Hub id or folder of an image-text-to-text model ('hf:' prefix optional; 'tiny' = test model; "
        "'miniworld:NAME' = a shipped miniature-world model).",
    )
    reasoner: str = Field(
        "openai:deepseek-ai/DeepSeek-R1-Distill-Qwen-7B@http://127.0.0.1:8001/v1",
        description="Frozen reasoner spec: openai:MODEL@URL (vllm serve), hf:ID_OR_PATH, tiny, provider:model.",
    )
    prompt_preset: str = Field("paper-train", description="Prompt preset of the policy and the reward graph.")

    # data
    dataset: str = Field("TIGER-Lab/ViRL39K", description="'demo', a Hub dataset id, or a local .parquet/.jsonl file.")
    dataset_split: str = "train"
    image_root: str | None = Field(None, description="Folder that relative image paths start from (default: the file's).")
    max_samples: int | None = Field(None, gt=0, description="Keep only the first N rows.")
    drop_sources: list[str] = Field(["DeepScaleR"], description="Drop rows whose `source` is one of these.")
    difficulty_filter: bool = Field(False, description="Drop rows the current captioner+reasoner always/never solve.")
    filter_samples: int = Field(4, ge=2, description="Samples per row to estimate its pass rate.")
    pass_rate_cache: str | None = Field(None, description="JSONL cache of pass rates (default: OUTPUT_DIR/pass_rates.jsonl).")

    # reward
    reasoner_samples: int = Field(1, ge=1, description="Reasoner samples per caption; the reward is their mean accuracy.")
    reasoner_temperature: float = Field(1.0, ge=0)
    reasoner_top_p: float = Field(1.0, gt=0, le=1)
    reasoner_max_new_tokens: int = Field(4096, gt=0, description="Reasoner token budget (fitted to a served context).")
    reasoner_timeout_s: float = Field(
        600.0, gt=0,
        description="Bound on one reasoner call, counting time queued on the server (then retried; a served reasoner "
        "that completes no call for 2 timeouts counts as hung and its calls fail at once).",
    )
    reasoner_concurrency: int = Field(64, gt=0, description="Concurrent reasoner calls (local HF: micro-batch size).")
    reasoner_batch_wait_s: float = Field(
        0.1, ge=0, description="Local HF reasoner: how long to gather a step's calls into one generate."
    )
    failed_reward: float | None = Field(
        None, description="Reward of a caption whose reasoner calls all failed; None leaves it out of the loss."
    )
    length_penalty: float = Field(0.0, ge=0, description="Weight of the -tokens/max_completion_length reward term.")
    answer_type: AnswerType = Field("auto", description="Grader answer type for rows without one (rapid_agent.answers).")

    # GRPO (TRL GRPOConfig fields of the same name)
    num_generations: int = Field(4, description="Group size G: captions sampled per question.")
    per_device_train_batch_size: int = Field(8, gt=0, description="Captions (not questions) per device per micro-step.")
    gradient_accumulation_steps: int = Field(1, gt=0)
    steps_per_generation: int | None = Field(None, gt=0, description="Micro-steps per rollout batch.")
    num_iterations: int = Field(1, gt=0)
    learning_rate: float = Field(1e-6, gt=0)
    lr_scheduler_type: str = "constant"
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.01, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    beta: float = Field(0.001, ge=0, description="KL coefficient (0 loads no reference model).")
    epsilon: float = Field(0.2, gt=0, description="PPO clip range.")
    epsilon_high: float | None = Field(None, gt=0)
    loss_type: LossType = Field("dapo", description="Loss aggregation; 'dapo' = token-level over the update batch.")
    scale_rewards: Literal["group", "batch", "none"] = "group"
    temperature: float = Field(1.0, gt=0, description="Caption sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1)
    max_completion_length: int = Field(1024, gt=0, description="Longest caption, in tokens.")
    num_train_epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, description="Optimizer updates; -1 = run num_train_epochs.")
    save_steps: int = Field(50, gt=0)
    save_total_limit: int | None = Field(None, gt=0)
    logging_steps: int = Field(1, gt=0)
    seed: int = 42
    gradient_checkpointing: bool = True
    bf16: bool | None = Field(None, description="None = bf16 on CUDA, fp32 elsewhere.")
    log_completions: bool = False
    report_to: list[str] = Field(["none"], description="TRL/transformers loggers, e.g. tensorboard wandb.")

    # LoRA (peft)
    use_lora: bool = False
    lora_r: int = Field(64, gt=0)
    lora_alpha: int = Field(128, gt=0)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_target_modules: list[str] = Field(
        ["q_proj", "k_proj", "v_proj", "o_proj"], description="Module names (these match Qwen2.5-VL's language model only)."
    )

    # rollouts through TRL's vLLM integration
    use_vllm: bool = False
    vllm_mode: Literal["colocate", "server"] = "colocate"
    vllm_server_base_url: str | None = Field(None, description="URL of `trl vllm-serve` (server mode).")
    vllm_gpu_memory_utilization: float = Field(0.3, gt=0, le=1)
    vllm_tensor_parallel_size: int = Field(1, gt=0)

    # output
    output_dir: str = "runs/vpo"
    resume_from_checkpoint: str | None = Field(None, description="A checkpoint folder, or 'latest' in output_dir.")
    startup_check: bool = Field(True, description="Call the reasoner once before training; fail early if it cannot answer.")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") in ("paper", "miniworld"):
            return {**(PAPER if data["preset"] == "paper" else MINIWORLD), **data}
        return data

    @field_validator("num_generations")
    @classmethod
    def _group(cls, value: int) -> int:
        if value < 2:
            raise ValueError(f"num_generations (group size) must be at least 2 for group-relative advantages, got {value}")
        return value

    @field_validator("prompt_preset")
    @classmethod
    def _preset_without_tentative(cls, value: str) -> str:
        try:
            preset = get_preset(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        if preset.uses_tentative:
            raise ValueError(f"prompt preset {value!r} needs a tentative answer from the captioner; VPO rewards captions alone")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> VPOConfig:
        if self.reasoner_samples > 1 and self.reasoner_temperature == 0:
            raise ValueError("reasoner_samples > 1 at reasoner_temperature 0 averages identical answers; raise the temperature")
        if self.use_vllm and self.vllm_mode == "server" and not self.vllm_server_base_url:
            raise ValueError("vllm_mode 'server' needs vllm_server_base_url (the URL of `trl vllm-serve`)")
        return self

    def generation_batch_size(self, num_processes: int) -> int:
        """Captions sampled per rollout across all processes (TRL's `generation_batch_size`)."""
        steps = self.steps_per_generation or self.gradient_accumulation_steps
        return self.per_device_train_batch_size * num_processes * steps

    def check_batch(self, num_processes: int) -> None:
        """Raise `ConfigError` unless every rollout batch holds whole groups, as TRL requires."""
        total = self.generation_batch_size(num_processes)
        if total % self.num_generations:
            raise ConfigError(
                f"per_device_train_batch_size ({self.per_device_train_batch_size}) x processes ({num_processes}) x "
                f"steps_per_generation ({self.steps_per_generation or self.gradient_accumulation_steps}) = {total} "
                f"captions per rollout, not divisible by num_generations ({self.num_generations})"
            )

    @property
    def captioner_spec(self) -> str:
        """The captioner as a core model spec (for the graph's local captioner backend)."""
        return str(_policy_spec(self.captioner))

    def captioner_path(self) -> str:
        """The policy's Hub id or folder, as `from_pretrained` takes it."""
        spec = _policy_spec(self.captioner)
        return str(spec.local_path("captioner") or spec.model)

    def captioner_generation(self) -> GenerationSettings:
        """Caption sampling settings outside TRL (difficulty filtering): the policy's own."""
        return GenerationSettings(
            temperature=self.temperature, top_p=self.top_p, max_new_tokens=self.max_completion_length,
            max_batch_size=self.reasoner_concurrency,
        )

    def reasoner_generation(self) -> GenerationSettings:
        """Decoding settings of the reasoner during training (reward and difficulty filtering)."""
        return GenerationSettings(
            temperature=self.reasoner_temperature, top_p=self.reasoner_top_p,
            max_new_tokens=self.reasoner_max_new_tokens, timeout_s=self.reasoner_timeout_s,
            max_batch_size=self.reasoner_concurrency, max_wait_s=self.reasoner_batch_wait_s,
        )

    @property
    def pass_rate_cache_path(self) -> Path:
        return Path(self.pass_rate_cache) if self.pass_rate_cache else Path(self.output_dir) / "pass_rates.jsonl"


def _policy_spec(captioner: str) -> ModelSpec:
    """The policy as a local model spec: a spec of a local provider (`hf:`, `tiny`, `miniworld:NAME`) as given,
    anything else as `hf:` (a Hub id or folder, with or without a colon)."""
    try:
        spec = ModelSpec.parse(captioner)
        if spec.provider in LOCAL_PROVIDERS:
            return spec
    except ConfigError:
        pass
    return ModelSpec(provider="hf", model=captioner)


def world_size() -> int:
    """Processes in this run, as `accelerate launch` / torchrun announce it (1 without them)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def make_config(values: dict[str, Any]) -> VPOConfig:
    """Validate `values` into a `VPOConfig`; every problem becomes one `ConfigError` naming the fields."""
    try:
        return VPOConfig(**values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"]) or "config"
            message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
            problems.append(f"{where}: {message}")
        raise ConfigError("invalid VPO config: " + "; ".join(problems)) from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping of config values; raise `ConfigError` for a missing file or a non-mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings, got {type(data).__name__}")
    return data


def save_yaml(config: VPOConfig, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(config.model_dump(), sort_keys=False))
