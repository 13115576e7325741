"""Supervised stages of the miniature world: the reasoners and the (not yet aligned) captioner, with TRL's SFTTrainer.

Every training prompt is built from the same preset texts the RAPID graph sends (caption system
message, image before text, options appended by `format_question`), so the trained models run
unchanged behind `hf:` specs.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any, Literal

from datasets import Dataset, Features, List, Value
from pydantic import BaseModel, ConfigDict, Field

from rapid_agent.images import ImagePolicy, load_images
from rapid_agent.miniworld import world
from rapid_agent.models.tiny import build_tiny_captioner, build_tiny_reasoner
from rapid_agent.prompts import format_question, get_preset

PRESET = "paper-train"
_MESSAGE = {"role": Value("string"), "content": Value("string")}
_TEXT_FEATURES = Features({"prompt": List(_MESSAGE), "completion": List(_MESSAGE)})
_CHART_FEATURES = Features({"prompt": List(_MESSAGE), "completion": List(_MESSAGE), "values": List(Value("int32"))})


class ReasonerSize(BaseModel):
    """Architecture family, width and depth of a reasoner (heads of 32 dimensions), and its tokenizer's phrases."""

    model_config = ConfigDict(frozen=True)

    family: Literal["qwen2", "llama"] = Field("qwen2", description="Qwen2 (biased attention) or Llama (unbiased).")
    hidden_size: int = Field(128, gt=0, multiple_of=32)
    num_hidden_layers: int = Field(2, gt=0)
    phrase_tokens: bool = Field(
        False, description="The tokenizer holds each `bar A: ` as one token (as the captioner's does): a value in a "
        "description sits right after the token naming its bar, so answering 'which bar?' is a one-token look-back."
    )


class SFTStage(BaseModel):
    """One supervised run: how many optimizer steps over how many distinct examples."""

    model_config = ConfigDict(frozen=True)

    steps: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    examples: int = Field(gt=0, description="Distinct examples generated (cycled when steps need more).")
    learning_rate: float = Field(2e-3, ge=0)
    warmup_steps: int = Field(50, ge=0)
    decay_fraction: float = Field(
        0.2, gt=0, le=1, description="Share of the steps, at the end, over which the rate decays to 0 (warm-up, "
        "stable, decay: a tiny model needs the full rate to learn look-ups; 1 is a cosine over the whole run)."
    )

    @property
    def decay_steps(self) -> int:
        return max(1, min(round(self.decay_fraction * self.steps), self.steps - self.warmup_steps))


class CaptionerPhase(SFTStage):
    """A supervised phase of the captioner, with the mix of targets it trains on."""

    full_probability: float = Field(0.2, ge=0, le=1, description="Share of captions describing every bar.")
    direct_fraction: float = Field(0.2, ge=0, lt=1, description="Share of rows answering the question directly.")


def user_message(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def reasoner_prompt(caption: str, task: world.Task) -> list[dict[str, str]]:
    """The graph's reasoner messages for `caption` (preset paper-train)."""
    preset = get_preset(PRESET)
    text = preset.reasoner_user.format(caption=caption, question=format_question(task.question, task.options), tentative="")
    return [{"role": "system", "content": preset.reasoner_system}, user_message(text)]


def caption_prompt(task: world.Task) -> list[dict[str, str]]:
    """The graph's captioning messages (the image goes before the text, as the graph sends it)."""
    preset = get_preset(PRESET)
    text = preset.caption_user.format(question=format_question(task.question, task.options))
    return [{"role": "system", "content": preset.caption_system}, user_message(text)]


def direct_prompt(task: world.Task) -> list[dict[str, str]]:
    """The graph's direct-answer (tentative) messages: the MLLM asked the question itself."""
    preset = get_preset(PRESET)
    return [{"role": "system", "content": preset.tentative_system}, user_message(format_question(task.question, task.options))]


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def reasoner_dataset(count: int, *, seed: int, sum_style: world.SumStyle) -> Dataset:
    """(true description + question → work and boxed answer) rows on training scenes."""
    rows = [
        {"prompt": reasoner_prompt(world.describe(task.scene), task),
         "completion": _assistant(world.reasoner_work(task, sum_style=sum_style))}
        for task in world.tasks("train", count, seed=seed)
    ]
    return Dataset.from_list(rows, features=_TEXT_FEATURES)


def captioner_dataset(count: int, *, seed: int, full_probability: float, direct_fraction: float) -> Dataset:
    """Captioning rows (question-blind partial descriptions) and a share of direct-answer rows.

    A row keeps its chart's bar values; the chart is drawn (224 px) as the row is read, in the data loader's
    workers, and passes through the graph's `ImagePolicy`: the pixels inference sees in the chart's PNG (a
    lossless format), without PNG-encoding every chart up front in the training process (~1 ms a row).
    """
    rng = random.Random(f"captioner-{seed}")
    rows = []
    for task in world.tasks("train", count, seed=seed):
        if rng.random() < direct_fraction:
            prompt, target = direct_prompt(task), world.direct_answer(task)
        else:
            prompt, target = caption_prompt(task), world.partial_description(task.scene, rng, full_probability=full_probability)
        rows.append({"prompt": prompt, "completion": _assistant(target), "values": list(task.scene.values)})
    return _charts_drawn_on_access(Dataset.from_list(rows, features=_CHART_FEATURES))


def _charts_drawn_on_access(dataset: Dataset) -> Dataset:
    """Each row's `values` become its `images`, the chart drawn and fitted as the graph fits images, on access."""
    policy = ImagePolicy()

    def transform(batch: dict[str, list]) -> dict[str, list]:
        charts = [world.draw(world.Scene(values=tuple(values))) for values in batch.pop("values")]
        batch["images"] = [load_images([chart], policy) for chart in charts]
        return batch

    return dataset.with_transform(transform)


def tokenizer_corpus(count: int = 200) -> list[str]:
    """Every prompt and target text of the world, `count` tasks' worth: the tiny tokenizer learns its
    words as whole tokens, so sequences are ~30% shorter (and steps ~30% cheaper) than with the
    generic tiny tokenizer. Digits stay single tokens (the pre-tokenizer splits numbers)."""
    rng = random.Random("tokenizer")
    texts = ["system", "user", "assistant"] * count  # the chat template's role names
    for task in world.tasks("train", count, seed=0):
        prompts = reasoner_prompt(world.describe(task.scene), task) + caption_prompt(task) + direct_prompt(task)
        texts += [message["content"] for message in prompts]
        texts += [world.reasoner_work(task, sum_style="partial"), world.partial_description(task.scene, rng, full_probability=0.5)]
    return texts


def init_reasoner(path: Path, size: ReasonerSize, *, seed: int) -> Path:
    """A fresh random reasoner of `size` with a tiny tokenizer trained on the world's texts."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        phrases = world.DESCRIPTION_PHRASES if size.phrase_tokens else ()
        base = build_tiny_reasoner(Path(tmp) / "base", seed=seed, corpus=tokenizer_corpus(), phrases=phrases)
        config = AutoConfig.from_pretrained(base)
        if size.family == "llama":  # the same tokenizer and special tokens, another architecture
            from transformers import LlamaConfig

            keep = ("vocab_size", "max_position_embeddings", "bos_token_id", "eos_token_id", "pad_token_id",
                    "tie_word_embeddings", "rms_norm_eps")
            config = LlamaConfig(**{key: getattr(config, key) for key in keep})
        config.hidden_size = size.hidden_size
        config.num_hidden_layers = size.num_hidden_layers
        config.intermediate_size = 2 * size.hidden_size
        config.num_attention_heads = size.hidden_size // 32
        config.head_dim = 32
        config.num_key_value_heads = 2 if config.num_attention_heads % 2 == 0 else 1
        config.layer_types = ["full_attention"] * size.num_hidden_layers
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
        model.generation_config = AutoModelForCausalLM.from_pretrained(base).generation_config
        model.save_pretrained(path)
        AutoTokenizer.from_pretrained(base).save_pretrained(path)
    return path


def init_captioner(path: Path, *, seed: int) -> Path:
    """A fresh random tiny Qwen2.5-VL captioner (the project's tiny builder, the world's tokenizer).

    Its tokenizer holds each `bar A: ` as one token, so every digit of a value is predicted at most
    one position after a token naming its bar. With `bar`, ` A`, `:`, ` ` as separate tokens, the
    2-layer model first has to look back to find which bar it is describing, then find that bar in
    the image: held-out per-bar reading after 600 full-description steps was ~15% that way, 73% this way.
    """
    with tempfile.TemporaryDirectory() as tmp:
        base = build_tiny_captioner(Path(tmp) / "base", seed=seed, corpus=tokenizer_corpus(),
                                    phrases=world.DESCRIPTION_PHRASES)
        from transformers import AutoModelForImageTextToText, AutoProcessor

        AutoModelForImageTextToText.from_pretrained(base).save_pretrained(path)
        AutoProcessor.from_pretrained(base).save_pretrained(path)
    return path


def sft(model_dir: Path, dataset: Dataset, stage: SFTStage, out: Path, *, vision: bool, seed: int,
        callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Train the model in `model_dir` on `dataset` with TRL's SFTTrainer; save to `out`; return its log."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    cuda = torch.cuda.is_available()
    if vision:
        model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
        processing = AutoProcessor.from_pretrained(model_dir)
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        processing = AutoTokenizer.from_pretrained(model_dir)
    args = SFTConfig(
        output_dir=str(out / "trainer"),
        max_steps=stage.steps,
        per_device_train_batch_size=stage.batch_size,
        learning_rate=stage.learning_rate,
        warmup_steps=stage.warmup_steps,
        lr_scheduler_type="warmup_stable_decay",
        lr_scheduler_kwargs={"num_decay_steps": stage.decay_steps, "decay_type": "cosine"},
        weight_decay=0.0,
        logging_steps=max(1, stage.steps // 50),
        save_strategy="no",
        report_to=[],
        use_cpu=not cuda,
        bf16=False,  # fp32 everywhere: the shipped models run on CPUs
        seed=seed,
        max_length=None,
        remove_unused_columns=not vision,
        # images are decoded, fitted and processed beside the training step, in worker processes (a quarter of a
        # CPU step at one thread; on a GPU, most of it); the order and pixels are those of the main process
        dataloader_num_workers=min(8, (os.cpu_count() or 1) - 1) if vision else 0,
        dataset_num_proc=None,
        activation_checkpointing=False,  # tiny activations: recomputing them only costs time
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=processing, callbacks=callbacks)
    trainer.train()
    trainer.save_model(str(out))
    processing.save_pretrained(str(out))
    model.generation_config.save_pretrained(str(out))
    return {"log_history": trainer.state.log_history}
