"""A few VPO steps (GRPO + LoRA on the captioner) at real model sizes: step time, tokens/s, peak GPU memory.

    python benchmarks/vpo_gpu_step.py [--tiny] [--steps 3] [--out DIR] [-- VPO flags...]

Builds, from config with random weights (no hub), a Qwen2.5-VL-3B-Instruct captioner and a
Qwen2.5-1.5B-Instruct reasoner (the published configs below), saves them under DIR (default: a temporary
folder), and trains through `training.vpo.build_trainer`: LoRA (`--use_peft`), bf16 on CUDA, rollouts by
transformers `generate` (no vLLM), the reward from the RAPID graph with the 1.5B model as the local
`hf:PATH` reasoner, the `demo` data set. Step 1 is the warm-up; the summary leaves it out. Each step prints
a line, then a summary line and the same as one JSON line. Flags after `--` go to `training.vpo` (later
flags win), e.g. `-- --max_completion_length 512 --per_device_train_batch_size 16`.

The tokenizer and processor are the offline ones of `rapid_agent.models.tiny` (a ~1k-token BPE); the
models keep the real 151,936-row embedding. Token ids are meaningless and random weights never emit EOS,
so every caption and reasoner answer runs to its token budget, and every reward is 0 (the backward pass
runs all the same): only shapes, time and memory mean anything. The demo pictures are 160x96 (24 image tokens), so the vision tower's share is small.
`--tiny` runs the same code with tiny configs on a CPU in seconds (CI runs it).

On the lent GPU machine (Python 3.12, no network; torch, transformers, peft, accelerate, pandas, pyarrow,
httpx, pyyaml, pillow, xxhash there) carry the rest of `training.vpo`'s import chain as wheels (17 MB),
pinned to the versions of this project's dev venv:

    echo /.whl/ >> .git/info/exclude
    pip freeze | grep -iE '^(trl|datasets|dill|multiprocess|langgraph(-checkpoint|-prebuilt|-sdk)?|langchain-(core|openai|protocol)|openai|jiter|distro|sniffio|httpx2|httpcore2|truststore|langsmith|jsonpatch|jsonpointer|tenacity|uuid.utils|orjson|ormsgpack|requests-toolbelt|zstandard|websockets|pydantic(.core)?|annotated.types|typing.inspection|math.verify|latex2sympy2_extended|antlr4-python3-runtime)==' > carry.txt  # 35 lines
    pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl -r /tmp/carry.txt
    # there (carry: [".whl"]):
    pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && PYTHONPATH=/tmp/site:$PWD python benchmarks/vpo_gpu_step.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
    GenerationConfig,
    Qwen2_5_VLConfig,
    Qwen2Config,
    TrainerCallback,
)

from rapid_agent.models.tiny import QWEN_SPECIAL_TOKENS, ensure_tiny_models

# fmt: off
# https://huggingface.co/Qwen/Qwen2.5-VL-3B-Instruct/blob/main/config.json
QWEN25_VL_3B = {
    "text_config": {
        "hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36, "num_attention_heads": 16,
        "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 128000, "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0, "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
        "hidden_act": "silu", "tie_word_embeddings": True, "sliding_window": 32768, "use_sliding_window": False,
        "max_window_layers": 70,
    },
    "vision_config": {
        "depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "out_hidden_size": 2048,
        "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2, "hidden_act": "silu",
    },
    "tie_word_embeddings": True,
}
# https://huggingface.co/Qwen/Qwen2.5-1.5B-Instruct/blob/main/config.json
QWEN25_1_5B = {
    "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12,
    "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0, "hidden_act": "silu", "tie_word_embeddings": True, "sliding_window": 32768,
    "use_sliding_window": False, "max_window_layers": 21,
}
# --tiny: rapid_agent.models.tiny's sizes, with a vocabulary larger than the tokenizer (as the real one is)
TINY_VL = {
    "text_config": {
        "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 2048, "max_position_embeddings": 4096,
        "rope_scaling": {"type": "mrope", "mrope_section": [4, 6, 6]},
    },
    "vision_config": {
        "depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 4, "out_hidden_size": 128,
        "fullatt_block_indexes": [1], "window_size": 56,
    },
}
TINY_LM = {
    "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "vocab_size": 2048, "max_position_embeddings": 4096, "tie_word_embeddings": True,
}
# the run's shape (training.vpo settings); the real one as in training/recipes/single_gpu_lora.yaml
REAL_RUN = {"per_device_train_batch_size": 8, "num_generations": 4, "max_completion_length": 256,
            "reasoner_max_new_tokens": 256}
TINY_RUN = {"per_device_train_batch_size": 4, "num_generations": 4, "max_completion_length": 12,
            "reasoner_max_new_tokens": 12}
QWEN_IDS = {"<|endoftext|>": 151643, "<|im_end|>": 151645, "<|vision_start|>": 151652, "<|vision_end|>": 151653,
            "<|image_pad|>": 151655, "<|video_pad|>": 151656}
"""The published token ids; the benchmark passes its tokenizer's own."""
# fmt: on


def captioner_config(sizes: dict = QWEN25_VL_3B, ids: dict[str, int] = QWEN_IDS) -> Qwen2_5_VLConfig:
    """A Qwen2.5-VL config of `sizes`, its special token ids those of the tokenizer (`ids`)."""
    special = {"bos_token_id": None, "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"]}
    return Qwen2_5_VLConfig(
        **{**sizes, "text_config": {**sizes["text_config"], **special}},
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )


def reasoner_config(sizes: dict = QWEN25_1_5B, ids: dict[str, int] = QWEN_IDS) -> Qwen2Config:
    return Qwen2Config(
        **sizes, bos_token_id=None, eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"]
    )


def build_models(out: Path, tiny: bool, device: str) -> tuple[Path, Path]:
    """Random-weight captioner and reasoner folders under `out`, with the offline tiny tokenizer/processor."""
    tiny_captioner, tiny_reasoner = ensure_tiny_models(out / "tokenizers")
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    jobs = [
        (captioner_config, TINY_VL if tiny else QWEN25_VL_3B, AutoModelForImageTextToText, AutoProcessor, tiny_captioner),
        (reasoner_config, TINY_LM if tiny else QWEN25_1_5B, AutoModelForCausalLM, AutoTokenizer, tiny_reasoner),
    ]  # fmt: skip
    for make_config, sizes, auto, auto_processor, source in jobs:
        processor = auto_processor.from_pretrained(source)
        tokenizer = getattr(processor, "tokenizer", processor)
        path = out / ("captioner" if make_config is captioner_config else "reasoner")
        config = make_config(sizes, {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS})
        torch.manual_seed(0)
        with torch.device(device):  # initialised in place: 3.75B parameters take seconds on a GPU
            model = auto.from_config(config, dtype=dtype)
        model.generation_config = GenerationConfig.from_pretrained(source)  # stop at <|im_end|>, pad id
        model.save_pretrained(path)
        processor.save_pretrained(path)
        size = sum(p.numel() for p in model.parameters()) / 1e9
        print(f"{path.name}: {size:.3f}B parameters, random, {dtype}", flush=True)
        del model
    torch.cuda.empty_cache() if device == "cuda" else None
    return out / "captioner", out / "reasoner"


class StepMeter(TrainerCallback):
    """Wall time, caption tokens and peak GPU memory of each optimizer step (rollout + reward + update)."""

    def __init__(self):
        self.rows: list[dict] = []

    def on_step_begin(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        torch.cuda.synchronize() if torch.cuda.is_available() else None
        self.dt = time.perf_counter() - self.t0

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "completions/mean_length" not in logs:
            return
        completions = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        tokens = logs["completions/mean_length"] * completions
        peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
        row = {
            "step": state.global_step,
            "step_time_s": self.dt,
            "caption_tokens": tokens,
            "tokens_per_s": tokens / self.dt,
            "peak_gpu_mem_gib": peak,
            "reasoner_latency_s": logs.get("vpo/reasoner_latency_s"),
        }
        self.rows.append(row)
        print(
            f"step {row['step']}: {self.dt:.2f} s, {tokens:.0f} caption tokens, {tokens / self.dt:.1f} tokens/s, "
            f"peak {'n/a' if peak is None else f'{peak:.1f} GiB'}",
            flush=True,
        )


def run(out: Path, tiny: bool, steps: int, extra: list[str]) -> dict:
    from transformers import PrinterCallback

    from training.vpo import build_trainer, parse_args  # needs trl, langgraph: see the docstring

    device = "cuda" if torch.cuda.is_available() else "cpu"
    captioner, reasoner = build_models(out, tiny, device)
    settings = {
        "dataset_name": "demo", "model_name_or_path": captioner, "reasoner": f"hf:{reasoner}",
        "output_dir": out / "run", "max_steps": steps, "logging_steps": 1, "save_strategy": "no",
        "report_to": "none", "disable_tqdm": True, "use_vllm": False, "use_peft": True, "lora_r": 64,
        "lora_alpha": 128, "activation_checkpointing": True, "bf16": device == "cuda", **(TINY_RUN if tiny else REAL_RUN),
    }  # fmt: skip
    flags = [
        arg
        for key, value in settings.items()
        for arg in (f"--{key}", str(value).lower() if isinstance(value, bool) else str(value))
    ]
    trainer = build_trainer(*parse_args([*flags, *extra]))
    meter = StepMeter()
    trainer.remove_callback(PrinterCallback)  # the meter prints one short line a step instead
    trainer.add_callback(meter)
    trainer.train()
    timed = meter.rows[1:] or meter.rows  # step 1 (CUDA/kernels warm-up) left out
    step_time = statistics.fmean(r["step_time_s"] for r in timed)
    peaks = [r["peak_gpu_mem_gib"] for r in meter.rows if r["peak_gpu_mem_gib"] is not None]
    return {
        "size": "tiny" if tiny else "real",
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "steps": len(meter.rows),
        "step_time_s": step_time,
        "tokens_per_s": sum(r["caption_tokens"] for r in timed) / sum(r["step_time_s"] for r in timed),
        "peak_gpu_mem_gib": max(peaks) if peaks else None,
        "per_step": meter.rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny configs, for a CPU (CI)")
    parser.add_argument("--steps", type=int, default=3, help="VPO steps; the first is the warm-up")
    parser.add_argument(
        "--out", type=Path, help="where the models and the run go (default: a temporary folder)"
    )
    parser.add_argument("extra", nargs="*", help="after --: training.vpo flags")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vpo-gpu-step-") as tmp:
        result = run(args.out or Path(tmp), args.tiny, args.steps, args.extra)
    peak = "n/a" if result["peak_gpu_mem_gib"] is None else f"{result['peak_gpu_mem_gib']:.1f} GiB"
    print(
        f"{result['size']} on {result['device']}: {result['steps']} steps, mean step {result['step_time_s']:.2f} s "
        f"(without the warm-up), {result['tokens_per_s']:.1f} caption tokens/s, peak GPU memory {peak}"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
