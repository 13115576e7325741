"""A miniature world in which tiny models trained by this project reproduce RAPID's claims on a CPU.

`rapid_agent.miniworld.world` draws the bar charts and writes every text target; the shipped weights
(trained by `python -m training.miniworld`) resolve from specs `miniworld:captioner` (after VPO),
`miniworld:captioner-sft`, `miniworld:captioner-pool` (VPO against both reasoners), `miniworld:captioner-guarded`
(VPO with the leak guard), `miniworld:reasoner-small`, `miniworld:reasoner-large` and `miniworld:reasoner-other`.
"""

from __future__ import annotations

from pathlib import Path

from rapid_agent.errors import ConfigError

MODELS = ("captioner", "captioner-sft", "captioner-pool", "captioner-guarded", "reasoner-small", "reasoner-large", "reasoner-other")
WEIGHTS_DIR = Path(__file__).parent / "weights"
MANIFEST = "manifest.json"


def model_path(name: str, weights_dir: Path = WEIGHTS_DIR) -> Path:
    """The folder of shipped model `name`; `ConfigError` for an unknown name or missing weights."""
    if name not in MODELS:
        raise ConfigError(f"unknown miniworld model {name!r}; known: {', '.join(MODELS)}")
    path = weights_dir / name
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"miniworld model {name!r} has no weights in {path}; train them with `python -m training.miniworld`"
        )
    return path


__all__ = ["MANIFEST", "MODELS", "WEIGHTS_DIR", "model_path"]
