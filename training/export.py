"""`python -m training.export ADAPTER --out FOLDER`: merge a VPO LoRA adapter into full weights.

The result is an ordinary checkpoint (weights, config, processor) that `vllm serve FOLDER`,
`--captioner hf:FOLDER` and `from_pretrained` load without peft.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rapid_agent.errors import ConfigError, RapidError
from rapid_agent.models.local import adapter_base


def export_merged(adapter: str | Path, out: str | Path, *, dtype: str = "auto") -> Path:
    """Merge the adapter in `adapter` into its base model and save the full checkpoint to `out`."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    adapter, out = Path(adapter), Path(out)
    base = adapter_base(adapter)
    if base is None:
        raise ConfigError(f"{adapter} holds no LoRA adapter (adapter_config.json); full checkpoints need no export")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"output folder {out} is not empty")
    torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch_dtype)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged.save_pretrained(out)
    has_processor = (adapter / "processor_config.json").is_file() or (adapter / "tokenizer_config.json").is_file()
    AutoProcessor.from_pretrained(adapter if has_processor else base).save_pretrained(out)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("adapter", help="folder of a LoRA adapter written by training.vpo (output dir or checkpoint)")
    parser.add_argument("--out", required=True, help="empty or new folder for the merged checkpoint")
    parser.add_argument("--dtype", default="auto", help="weights dtype: auto (as the base), bfloat16, float16, float32")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        print(export_merged(args.adapter, args.out, dtype=args.dtype))
    except RapidError as exc:
        print(f"training.export: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
