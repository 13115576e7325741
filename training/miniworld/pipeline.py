"""The miniature world's whole pipeline: SFT reasoners, SFT captioner, VPO, evals, claims, docs.

Each stage writes its model (fp16, as shipped) under `OUT/models/NAME` with a completion marker, so
an interrupted run resumes at the first unfinished stage. Evals run `python -m evals.run` on the
held-out `miniworld` benchmark: both captioners (after and before VPO) side by side with both
reasoners (decoupled, direct, blind), in one paired report.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from training.config import MINIWORLD
from training.miniworld.sft import ReasonerSize, SFTStage

log = logging.getLogger(__name__)
DONE = "stage.complete"
SEP = "=" * 100


class MiniworldConfig(BaseModel):
    """Every setting of one pipeline run (sizes in steps and examples, never minutes)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 0
    reasoner_small: SFTStage = SFTStage(steps=3000, batch_size=64, examples=60_000)
    reasoner_large: SFTStage = SFTStage(steps=2000, batch_size=64, examples=60_000)  # wider and deeper: fewer steps
    small_size: ReasonerSize = ReasonerSize(hidden_size=128, num_hidden_layers=2)
    large_size: ReasonerSize = ReasonerSize(hidden_size=160, num_hidden_layers=3)
    captioner: tuple[SFTStage, ...] = (  # the digits come late: a second phase at a lower rate
        SFTStage(steps=2700, batch_size=16, examples=24_000),
        SFTStage(steps=3000, batch_size=16, examples=24_000, learning_rate=1e-3),
    )
    full_probability: float = Field(0.2, ge=0, le=1, description="Share of SFT captions describing every bar.")
    direct_fraction: float = Field(0.2, ge=0, lt=1, description="Share of captioner rows answering directly.")
    vpo_steps: int = Field(MINIWORLD["max_steps"], gt=0)
    vpo_learning_rate: float = Field(MINIWORLD["learning_rate"], gt=0)
    vpo_prompts: int = Field(4000, gt=0, description="Distinct training questions VPO draws from.")
    vpo_settings: dict[str, str] = Field(default_factory=dict, description="Further VPOConfig fields (over the preset).")
    eval_items: int = Field(500, gt=0)
    lr_scale: float = Field(1.0, gt=0, description="Multiplies every learning rate (1e-6: a broken training step, for tests).")
    max_new_tokens: int = Field(64, gt=0)

    @classmethod
    def quick(cls, **overrides: Any) -> MiniworldConfig:
        """A few minutes end to end (CI): the same stages at a fraction of the steps."""
        values: dict[str, Any] = {
            "reasoner_small": SFTStage(steps=250, batch_size=32, examples=6000),
            "reasoner_large": SFTStage(steps=250, batch_size=32, examples=6000),
            "captioner": (SFTStage(steps=500, batch_size=16, examples=6000),),
            "vpo_steps": 30,
            "eval_items": 100,
        }
        return cls(**(values | overrides))


class Stage(BaseModel):
    name: str
    seconds: float
    info: dict[str, Any] = {}


def _done(path: Path) -> bool:
    return (path / DONE).is_file()


def _to_fp16(src: Path, dst: Path) -> None:
    """Copy a checkpoint folder to `dst` with the weights in fp16 (the shipped form)."""
    import torch
    from safetensors.torch import load_file, save_file

    dst.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.name == "model.safetensors":
            tensors = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in load_file(item).items()}
            save_file(tensors, dst / item.name, metadata={"format": "pt"})
        elif item.is_file() and item.suffix in (".json", ".jinja", ".txt", ".model"):
            shutil.copy2(item, dst / item.name)


def _finish_model(work: Path, final: Path, info: dict[str, Any]) -> None:
    if final.exists():
        shutil.rmtree(final)
    _to_fp16(work, final)
    (final / "training_log.json").write_text(json.dumps(info, indent=1) + "\n")
    (final / DONE).write_text("ok\n")
    shutil.rmtree(work, ignore_errors=True)


class Pipeline:
    """Runs the stages in order into `out`; `report` is called with the results at the end."""

    def __init__(self, config: MiniworldConfig, out: Path, *, progress: bool = True) -> None:
        self.config, self.out, self.progress = config, Path(out).resolve(), progress  # absolute: short run labels
        self.models = self.out / "models"
        self.stages: list[Stage] = []

    def model(self, name: str) -> Path:
        return self.models / name

    def run(self, stop_after: str | None = None) -> dict[str, Any]:
        """Run (or resume) the stages; with `stop_after`, stop once that stage is done."""
        from tqdm.auto import tqdm

        steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("reasoner-small", lambda: self.train_reasoner("reasoner-small", self.config.reasoner_small,
                                                          self.config.small_size, "line")),
            ("reasoner-large", lambda: self.train_reasoner("reasoner-large", self.config.reasoner_large,
                                                          self.config.large_size, "partial")),
            ("captioner-sft", self.train_captioner),
            ("captioner", self.train_vpo),
            ("evals", self.evaluate),
        ]
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.json").write_text(self.config.model_dump_json(indent=1) + "\n")
        if stop_after is not None and stop_after not in dict(steps):
            raise ValueError(f"unknown stage {stop_after!r}; stages: {', '.join(dict(steps))}")
        bar = tqdm(steps, desc="miniworld", unit="stage", disable=not self.progress, position=0)
        for name, fn in bar:
            bar.set_postfix_str(name)
            start = time.monotonic()
            info = fn()
            self.stages.append(Stage(name=name, seconds=time.monotonic() - start, info=info))
            if not info.get("skipped"):
                self._record_time(name, self.stages[-1].seconds)
            tqdm.write(f"{SEP}\nstage {name}: {self.stages[-1].seconds:.0f} s\n{SEP}")
            if name == stop_after:
                break
        return {"stages": [s.model_dump() for s in self.stages]}

    def scaled(self, stage: SFTStage) -> SFTStage:
        return stage.model_copy(update={"learning_rate": stage.learning_rate * self.config.lr_scale})

    def _record_time(self, name: str, seconds: float) -> None:
        """Keep each stage's duration and hardware in `OUT/stages.json` (stages may run on several machines)."""
        import torch

        path = self.out / "stages.json"
        times = json.loads(path.read_text()) if path.is_file() else {}
        device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
        if name in times and times[name]["device"] == device:  # a resumed stage: its parts add up
            seconds += times[name]["seconds"]
        times[name] = {"seconds": round(seconds, 1), "device": device}
        path.write_text(json.dumps(times, indent=1) + "\n")

    # ------------------------------------------------------------------------------------- stages

    def train_reasoner(self, name: str, stage: SFTStage, size: ReasonerSize, sum_style: str) -> dict[str, Any]:
        from training.miniworld.sft import init_reasoner, reasoner_dataset, sft

        final = self.model(name)
        if _done(final):
            return {"skipped": True}
        work = self.out / "work" / name
        seed = self.config.seed + (1 if name.endswith("large") else 0)
        init = init_reasoner(work / "init", size, seed=seed)
        data = reasoner_dataset(stage.examples, seed=seed, sum_style=sum_style)
        info = sft(init, data, self.scaled(stage), work / "trained", vision=False, seed=seed)
        info |= {"size": size.model_dump(), "sum_style": sum_style, "stage": stage.model_dump(), "params": _params(work / "trained")}
        _finish_model(work / "trained", final, info)
        return {"params": info["params"]}

    def train_captioner(self) -> dict[str, Any]:
        """SFT of the captioner in phases (each a fresh cosine schedule on new examples), from scratch."""
        from training.miniworld.sft import captioner_dataset, init_captioner, sft

        final, c = self.model("captioner-sft"), self.config
        if _done(final):
            return {"skipped": True}
        work = self.out / "work" / "captioner-sft"
        current, history = init_captioner(work / "init", seed=c.seed), []
        for i, phase in enumerate(c.captioner, 1):
            target = work / f"phase-{i}"
            if not _done(target):  # a finished phase is kept: an interrupted run resumes after it
                data = captioner_dataset(phase.examples, seed=c.seed + i - 1, full_probability=c.full_probability,
                                         direct_fraction=c.direct_fraction)
                info = sft(current, data, self.scaled(phase), target, vision=True, seed=c.seed + i - 1)
                (target / "training_log.json").write_text(json.dumps(info) + "\n")
                (target / DONE).write_text("ok\n")
            history += json.loads((target / "training_log.json").read_text())["log_history"]
            current = target
        info = {"log_history": history, "phases": [p.model_dump() for p in c.captioner], "params": _params(current)}
        _finish_model(current, final, info)
        shutil.rmtree(work, ignore_errors=True)
        return {"params": info["params"]}

    def train_vpo(self) -> dict[str, Any]:
        """`python -m training.vpo --preset miniworld` from the SFT captioner, the small reasoner frozen."""
        final, c = self.model("captioner"), self.config
        if _done(final):
            return {"skipped": True}
        work = self.out / "work" / "vpo"
        argv = [
            "--preset", "miniworld", "--captioner", f"hf:{self.model('captioner-sft')}",
            "--reasoner", f"hf:{self.model('reasoner-small')}", "--max-steps", str(c.vpo_steps),
            "--learning-rate", str(c.vpo_learning_rate * c.lr_scale), "--max-samples", str(c.vpo_prompts),
            "--seed", str(c.seed), "--save-steps", str(c.vpo_steps), "--bf16", "false", "--output-dir", str(work),
        ]
        for name, value in c.vpo_settings.items():
            argv += [f"--{name.replace('_', '-')}", value]
        _run_module("training.vpo", argv)
        history = json.loads(_trainer_state(work).read_text())["log_history"]
        _finish_model(work, final, {"log_history": history, "argv": ["python", "-m", "training.vpo", *argv]})
        return {}

    def evaluate(self) -> dict[str, Any]:
        """Both captioners side by side with both reasoners (decoupled, direct, blind): one `evals.run`."""
        c, evals = self.config, self.out / "evals"
        argv = [
            "--captioner", f"hf:{self.model('captioner')}", "--captioner", f"hf:{self.model('captioner-sft')}",
            "--reasoner", f"hf:{self.model('reasoner-small')}", "--reasoner", f"hf:{self.model('reasoner-large')}",
            "--mode", "decoupled", "--mode", "direct", "--mode", "blind",
            "--benchmark", "miniworld", "--limit", str(c.eval_items), "--prompt", "paper-train",
            "--max-new-tokens", str(c.max_new_tokens), "--caption-max-new-tokens", str(c.max_new_tokens),
            "--batch-size", "32", "--concurrency", "64", "--cache", str(evals / "captions.sqlite"), "--seed", str(c.seed),
            "--output-dir", str(evals / "all"), "--resume", "--no-progress",
        ]
        _run_module("evals.run", argv)
        return {}


def _params(path: Path) -> int:
    from safetensors.torch import load_file

    return sum(t.numel() for t in load_file(path / "model.safetensors").values())


def _trainer_state(folder: Path) -> Path:
    """The newest `trainer_state.json` TRL wrote (the final save, else the last checkpoint)."""
    direct = folder / "trainer_state.json"
    if direct.is_file():
        return direct
    states = sorted(folder.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1]))
    if not states:
        raise FileNotFoundError(f"no trainer_state.json under {folder}")
    return states[-1]


def _run_module(module: str, argv: list[str]) -> None:
    """Run `python -m module argv` as its own process (its CLI exactly as a user runs it)."""
    import torch

    command = [sys.executable, "-m", module, *argv]
    log.info("running %s", " ".join(command))
    env = os.environ | {"OMP_NUM_THREADS": str(torch.get_num_threads())}  # the same CPU share as this process
    result = subprocess.run(command, check=False, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {result.returncode}")
