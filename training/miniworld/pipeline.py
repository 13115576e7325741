"""The miniature world's whole pipeline: SFT reasoners, SFT captioner, VPO, evals, claims, docs.

Each stage writes its model (fp16, as shipped) under `OUT/models/NAME` with a completion marker, so
an interrupted run resumes at the first unfinished stage. Evals run `python -m evals.run` on the
held-out `miniworld` benchmark: both captioners (after and before VPO) side by side with both
reasoners (decoupled, direct, blind; the quick run leaves direct out), in one paired report.
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
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from training.config import RECIPES, recipe
from training.miniworld.sft import CaptionerPhase, ReasonerSize, SFTStage
from training.miniworld.threads import ThreadShare

log = logging.getLogger(__name__)
DONE = "stage.complete"
FIRST_LANE = ("reasoner-small", "reasoner-large", "reasoner-other")  # independent of the side lane: beside it
SIDE_LANE = ("captioner-sft", "captioner", "captioner-pool")  # VPO needs the small reasoner: the first lane's first
POOL = ("reasoner-small", "reasoner-large")  # the captioner-pool stage's reward; reasoner-other is never a reward
WAIT_POLL_S = 5.0
SEP = "=" * 100


class MiniworldConfig(BaseModel):
    """Every setting of one pipeline run (sizes in steps and examples, never minutes)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 0
    shipped: tuple[str, ...] = Field(
        (), description="Stages whose model is taken from the package as it is, not trained (the quick run takes the "
        "reasoners: RAPID's reasoners are off-the-shelf models)."
    )
    pool_claim: bool = Field(
        True, description="Claim 5 and the leak guard: train a third reasoner that no VPO reward uses, a captioner by VPO "
        "against the pool of both other reasoners, and one by VPO with the leak guard (the quick run leaves them out)."
    )
    reasoner_small: SFTStage = SFTStage(steps=1500, batch_size=64, examples=60_000)
    reasoner_large: SFTStage = SFTStage(steps=1600, batch_size=64, examples=60_000)
    small_size: ReasonerSize = ReasonerSize(hidden_size=128, num_hidden_layers=2)
    # the larger reasoner's tokenizer holds `bar A: ` as one token: naming the bar of a value is then a one-token
    # look-back (without it, 1,200 steps named the wrong bar of the right value in ~1 of 4 comparisons)
    large_size: ReasonerSize = ReasonerSize(hidden_size=160, num_hidden_layers=3, phrase_tokens=True)
    # the third reasoner differs from both: another architecture (Llama), the small one's tokenizer, the large one's
    # written sums; it only ever reads captions at evaluation (claim 5: do pool-aligned captions transfer better?)
    reasoner_other: SFTStage = SFTStage(steps=1500, batch_size=64, examples=60_000)
    other_size: ReasonerSize = ReasonerSize(family="llama", hidden_size=128, num_hidden_layers=3)
    captioner: tuple[CaptionerPhase, ...] = (
        # reading first: every bar, every time (the digits come late; full targets carry twice the digits)
        CaptionerPhase(steps=2700, batch_size=16, examples=40_000, full_probability=1.0, direct_fraction=0.0,
                       decay_fraction=0.1),
        # then the deliberately misaligned habit VPO has to fix: two random bars, whatever the question
        # (600 steps at 1e-3 left greedy captions describing every bar 79% of the time)
        CaptionerPhase(steps=1000, batch_size=16, examples=16_000),
    )
    vpo_steps: int = Field(recipe("miniworld")["max_steps"], gt=0)
    vpo_learning_rate: float = Field(recipe("miniworld")["learning_rate"], gt=0)
    vpo_prompts: int = Field(4000, gt=0, description="Distinct training questions VPO draws from.")
    vpo_settings: dict[str, str] = Field(default_factory=dict, description="Further VPOConfig fields (over the recipe).")
    eval_items: int = Field(500, gt=0)
    eval_modes: tuple[Literal["decoupled", "direct", "blind"], ...] = Field(
        ("decoupled", "direct", "blind"), min_length=1,
        description="`evals.run --mode`s: decoupled and blind give the claims; direct (the captioner answering alone) "
        "the MLLM baseline and the leak check's recall."
    )
    lr_scale: float = Field(1.0, gt=0, description="Multiplies every learning rate (1e-6: a broken training step, for tests).")
    max_new_tokens: int = Field(64, gt=0)

    @field_validator("eval_modes")
    @classmethod
    def _claims_need(cls, modes: tuple[str, ...]) -> tuple[str, ...]:
        if missing := [mode for mode in ("decoupled", "blind") if mode not in modes]:
            raise ValueError(f"the claims compare decoupled and blind runs: add {' and '.join(missing)}")
        return modes

    @classmethod
    def quick(cls, **overrides: Any) -> MiniworldConfig:
        """Minutes end to end (CI): the captioner's SFT and VPO from scratch, at a fraction of the steps, against
        the shipped reasoners (a useful reasoner alone takes the full run's half hour; the VPO reward needs one)."""
        values: dict[str, Any] = {
            "shipped": ("reasoner-small", "reasoner-large"),
            "pool_claim": False,  # the quick run keeps its CI time
            "captioner": (CaptionerPhase(steps=800, batch_size=16, examples=12_800, full_probability=1.0,
                                         direct_fraction=0.0, decay_fraction=0.1),
                          CaptionerPhase(steps=200, batch_size=16, examples=3200)),
            "vpo_steps": 60,
            "eval_items": 400,  # the scaling margin is a few points: 200 items left its interval ±5.5
            "eval_modes": ("decoupled", "blind"),  # what the claims compare (direct: a third of the eval time)
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


def _finish_model(work: Path, final: Path, info: dict[str, Any], *, keep_source: bool = False) -> None:
    if final.exists():
        shutil.rmtree(final)
    _to_fp16(work, final)
    (final / "training_log.json").write_text(json.dumps(info, indent=1) + "\n")
    (final / DONE).write_text("ok\n")
    if not keep_source:
        shutil.rmtree(work, ignore_errors=True)


class Pipeline:
    """Runs the stages in order into `out`; `report` is called with the results at the end."""

    def __init__(self, config: MiniworldConfig, out: Path, *, progress: bool = True, side_lane: bool = False,
                 threads: ThreadShare | None = None) -> None:
        """`side_lane`: this process is the second lane of a two-lane run (its VPO waits for the first
        lane's small reasoner, and gives up if that lane's process is gone). `threads`: a share of the
        CPU that may grow while the run goes (applied at each stage and during training)."""
        self.config, self.out, self.progress = config, Path(out).resolve(), progress  # absolute: short run labels
        self.threads = threads
        self.side_lane = side_lane
        self.models = self.out / "models"
        self.stages: list[Stage] = []

    def model(self, name: str) -> Path:
        return self.models / name

    def stage_functions(self) -> dict[str, Callable[[], dict[str, Any]]]:
        """Every stage by name, in order."""
        c = self.config
        stages = {
            "reasoner-small": lambda: self.train_reasoner("reasoner-small", c.reasoner_small, c.small_size, "line"),
            "reasoner-large": lambda: self.train_reasoner("reasoner-large", c.reasoner_large, c.large_size, "partial"),
            "reasoner-other": lambda: self.train_reasoner("reasoner-other", c.reasoner_other, c.other_size, "partial"),
            "captioner-sft": self.train_captioner,
            "captioner": lambda: self.train_vpo("captioner", ["reasoner-small"]),
            "captioner-pool": lambda: self.train_vpo("captioner-pool", list(POOL)),
            "captioner-guarded": lambda: self.train_vpo("captioner-guarded", ["reasoner-small"], leak_penalty=1.0),
            "evals": self.evaluate,
        }
        pool_stages = ("reasoner-other", "captioner-pool", "captioner-guarded")
        return {name: (lambda name=name: self._take_shipped(name)) if name in c.shipped else run
                for name, run in stages.items() if c.pool_claim or name not in pool_stages}

    def run(self, stop_after: str | None = None, *, jobs: int = 1) -> dict[str, Any]:
        """Run (or resume) the stages; with `stop_after`, stop once that stage is done.

        With `jobs=2` the stages run in two lanes, each with its share of the threads: the reasoners
        in this process, the captioner (SFT, then VPO) in a second one (`--only ... --side-lane`).
        """
        import torch
        from tqdm.auto import tqdm

        functions = self.stage_functions()
        if stop_after is not None and stop_after not in functions:
            raise ValueError(f"unknown stage {stop_after!r}; stages: {', '.join(functions)}")
        wanted = list(functions)[: list(functions).index(stop_after) + 1] if stop_after else list(functions)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.json").write_text(self.config.model_dump_json(indent=1) + "\n")
        start, threads = time.monotonic(), torch.get_num_threads()
        first = [name for name in FIRST_LANE if name in wanted and name not in self.config.shipped]
        side_stages = [name for name in SIDE_LANE if name in wanted] if jobs > 1 and first else []
        side = self._start_side_lane(side_stages)
        names = [name for name in wanted if side is None or name not in side_stages]
        try:
            bar = tqdm(names, desc="miniworld", unit="stage", disable=not self.progress, position=0)
            for name in bar:
                if side is not None and name not in FIRST_LANE:  # the later stages need the side lane's models
                    self._join_side_lane(side, threads, side_stages)
                    side = None
                bar.set_postfix_str(name)
                self.run_stage(name)
            if side is not None:
                self._join_side_lane(side, threads, side_stages)
        except BaseException:
            if side is not None:  # a failed or interrupted lane stops the other one
                _stop_lane(side)
            raise
        self._record_wall(time.monotonic() - start, jobs)
        return {"stages": [s.model_dump() for s in self.stages]}

    def run_stage(self, name: str) -> None:
        """Run (or skip, when done) one stage and record its duration."""
        from tqdm.auto import tqdm

        if self.threads is not None:
            self.threads.apply()
        start = time.monotonic()
        info = self.stage_functions()[name]()
        self.stages.append(Stage(name=name, seconds=time.monotonic() - start, info=info))
        if not info.get("skipped"):
            self._record_time(name, self.stages[-1].seconds)
        tqdm.write(f"{SEP}\nstage {name}: {self.stages[-1].seconds:.0f} s\n{SEP}")

    def _start_side_lane(self, stages: list[str]) -> subprocess.Popen | None:
        """Start `stages` as their own process with half the threads (this process keeps the rest)."""
        import torch

        if all(_done(self.model(name)) for name in stages):
            return None
        threads = torch.get_num_threads()
        share = max(1, threads // 2)
        command = [sys.executable, "-m", "training.miniworld", "--out", str(self.out), "--config",
                   str(self.out / "config.json"), "--only", *stages, "--side-lane", "--threads", str(share),
                   "--no-progress"]
        log.info("side lane: %s", " ".join(command))
        torch.set_num_threads(max(1, threads - share))
        with (self.out / "side-lane.log").open("w") as log_file:
            return subprocess.Popen(command, env=os.environ | {"OMP_NUM_THREADS": str(share)}, stdout=log_file,
                                    stderr=subprocess.STDOUT, start_new_session=True)  # its own group: see _stop_lane

    def _join_side_lane(self, process: subprocess.Popen, threads: int, stages: list[str]) -> None:
        """Wait for the side lane; this process gets all `threads` back."""
        import torch

        code = process.wait()
        torch.set_num_threads(threads)
        if code != 0:
            tail = (self.out / "side-lane.log").read_text()[-3000:]
            raise RuntimeError(f"the side lane ({', '.join(stages)}) exited with {code}:\n{tail}")
        for name in stages:
            shipped = {"skipped": True, "shipped": True} if name in self.config.shipped else {}
            self.stages.append(Stage(name=name, seconds=0.0, info={"side_lane": True} | shipped))

    def _record_wall(self, seconds: float, jobs: int) -> None:
        """Keep the wall clock of an invocation that trained something, and whether it trained every stage
        (but the shipped models it took as they are, listed too)."""
        import torch

        if all(s.info.get("skipped") for s in self.stages):
            return  # nothing ran: the record of the run that made these models stands
        trained = json.loads((self.out / "stages.json").read_text()) if (self.out / "stages.json").is_file() else {}
        shipped = {s.name for s in self.stages if s.info.get("shipped")}
        record = {"seconds": round(seconds, 1), "jobs": jobs, "threads": torch.get_num_threads(),
                  "from_scratch": set(trained) == set(self.stage_functions()) - shipped and not any(
                      s.info.get("skipped") and s.name not in shipped for s in self.stages),
                  "shipped": sorted(shipped)}
        (self.out / "wall.json").write_text(json.dumps(record, indent=1) + "\n")

    def _callbacks(self) -> list[Any]:
        return [self.threads.callback()] if self.threads is not None else []

    def scaled(self, stage: SFTStage) -> SFTStage:
        return stage.model_copy(update={"learning_rate": stage.learning_rate * self.config.lr_scale})

    def _record_time(self, name: str, seconds: float) -> None:
        """Keep each stage's duration and hardware in `OUT/stages.json` (stages may run on several machines)."""
        import torch
        from filelock import FileLock

        path = self.out / "stages.json"
        device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
        with FileLock(path.with_suffix(".lock")):  # side-by-side stages write it from two processes
            times = json.loads(path.read_text()) if path.is_file() else {}
            if name in times and times[name]["device"] == device:  # a resumed stage: its parts add up
                seconds += times[name]["seconds"]
            times[name] = {"seconds": round(seconds, 1), "device": device}
            path.write_text(json.dumps(times, indent=1) + "\n")

    # ------------------------------------------------------------------------------------- stages

    def _take_shipped(self, name: str) -> dict[str, Any]:
        """The package's model `name` as this stage's model, untrained (no stage time; wall.json lists it)."""
        from rapid_agent.miniworld import model_path

        final = self.model(name)
        if not _done(final):
            shipped = model_path(name)
            info = json.loads((shipped / "training_log.json").read_text()) if (shipped / "training_log.json").is_file() else {}
            _finish_model(shipped, final, info | {"shipped": str(shipped), "params": _params(shipped)}, keep_source=True)
        return {"skipped": True, "shipped": True}

    def train_reasoner(self, name: str, stage: SFTStage, size: ReasonerSize, sum_style: str) -> dict[str, Any]:
        from training.miniworld.sft import init_reasoner, reasoner_dataset, sft

        final = self.model(name)
        if _done(final):
            return {"skipped": True}
        work = self.out / "work" / name
        seed = self.config.seed + (1 if name.endswith("large") else 0)
        init = init_reasoner(work / "init", size, seed=seed)
        data = reasoner_dataset(stage.examples, seed=seed, sum_style=sum_style)
        info = sft(init, data, self.scaled(stage), work / "trained", vision=False, seed=seed, callbacks=self._callbacks())
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
                data = captioner_dataset(phase.examples, seed=c.seed + i - 1, full_probability=phase.full_probability,
                                         direct_fraction=phase.direct_fraction)
                info = sft(current, data, self.scaled(phase), target, vision=True, seed=c.seed + i - 1,
                           callbacks=self._callbacks())
                (target / "training_log.json").write_text(json.dumps(info) + "\n")
                (target / DONE).write_text("ok\n")
            history += json.loads((target / "training_log.json").read_text())["log_history"]
            current = target
        info = {"log_history": history, "phases": [p.model_dump() for p in c.captioner], "params": _params(current)}
        _finish_model(current, final, info)
        shutil.rmtree(work, ignore_errors=True)
        return {"params": info["params"]}

    def train_vpo(self, name: str, reasoners: list[str], *, leak_penalty: float | None = None) -> dict[str, Any]:
        """`python -m training.vpo --config training/recipes/miniworld.yaml` from the SFT captioner, `reasoners` frozen
        (several: a pool, every caption read by each); `leak_penalty` turns the leak guard on."""
        final, c = self.model(name), self.config
        if _done(final):
            return {"skipped": True}
        for needed in ("captioner-sft", *reasoners):
            self._await_model(needed)
        work = self.out / "work" / name
        argv = [
            "--config", str(RECIPES / "miniworld.yaml"), "--model_name_or_path", f"hf:{self.model('captioner-sft')}",
            "--reasoner", *(f"hf:{self.model(r)}" for r in reasoners), "--max_steps", str(c.vpo_steps),
            "--learning_rate", str(c.vpo_learning_rate * c.lr_scale), "--max_samples", str(c.vpo_prompts),
            "--seed", str(c.seed), "--save_steps", str(c.vpo_steps), "--output_dir", str(work),
        ]
        argv += ["--leak_penalty", str(leak_penalty)] if leak_penalty is not None else []
        for key, value in c.vpo_settings.items():
            argv += [f"--{key}", value]
        _run_vpo(argv, self._callbacks())
        history = json.loads(_trainer_state(work).read_text())["log_history"]
        _finish_model(work, final, {"log_history": history, "argv": ["python", "-m", "training.vpo", *argv]})
        return {}

    def _await_model(self, name: str) -> None:
        """Return once stage `name`'s model is complete: in the side lane, wait for the first lane to finish it
        (while that lane's process lives); anywhere else a missing model is an error naming the stage."""
        parent = os.getppid()
        while not _done(self.model(name)):
            if not self.side_lane:
                raise RuntimeError(f"stage {name!r} has not run: its model is missing from {self.model(name)}")
            if os.getppid() != parent:
                raise RuntimeError(f"the lane training {name!r} is gone; its model never completed")
            time.sleep(WAIT_POLL_S)

    def evaluate(self) -> dict[str, Any]:
        """Every captioner side by side with every reasoner (in each of the config's modes): one `evals.run`."""
        c, evals = self.config, self.out / "evals"
        marker, models = evals / "all" / DONE, self._fingerprint()
        if marker.is_file():
            if marker.read_text() == models:  # the same models were evaluated: nothing to do
                return {"skipped": True}
            shutil.rmtree(evals / "all")  # results of models since retrained: evals.run would refuse to resume them
        captioners, reasoners = self._evaluated()
        argv = [
            *(f for name in captioners for f in ("--captioner", f"hf:{self.model(name)}")),
            *(f for name in reasoners for f in ("--reasoner", f"hf:{self.model(name)}")),
            *(f for mode in c.eval_modes for f in ("--mode", mode)),
            "--benchmark", "miniworld", "--limit", str(c.eval_items), "--prompt", "paper-train",
            "--max-new-tokens", str(c.max_new_tokens), "--caption-max-new-tokens", str(c.max_new_tokens),
            # micro-batches of 64: the outputs of 32 (all 1,600 of 200 items' samples alike), a fifth less time
            "--batch-size", "64", "--concurrency", "128", "--cache", str(evals / "captions.sqlite"), "--seed", str(c.seed),
            "--output-dir", str(evals / "all"), "--resume", "--no-progress",
        ]
        _run_module("evals.run", argv)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(models)
        return {}

    def _evaluated(self) -> tuple[list[str], list[str]]:
        """(captioners, reasoners) the evals compare: those this run's stages make."""
        stages = self.stage_functions()
        captioners = [n for n in ("captioner", "captioner-sft", "captioner-pool", "captioner-guarded") if n in stages]
        return captioners, [n for n in FIRST_LANE if n in stages]

    def _fingerprint(self) -> str:
        """The identity of every model's files, as the eval harness keys its results."""
        from rapid_agent.models.identity import model_identity

        captioners, reasoners = self._evaluated()
        return json.dumps({name: model_identity(f"hf:{self.model(name)}") for name in captioners + reasoners}, indent=1)


def _stop_lane(process: subprocess.Popen) -> None:
    """Stop a lane and everything it started (the data-loader workers of its captioner SFT)."""
    import signal

    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait()


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


def _run_vpo(argv: list[str], callbacks: list[Any]) -> None:
    """`python -m training.vpo ARGV` in this process: the same parsing and trainer, plus `callbacks` (the
    run's thread share, taken up while VPO trains), and no second start-up of torch and TRL."""
    from training.config import parse_args
    from training.vpo import train

    config, model_args = parse_args(argv)
    train(config, model_args, argv=argv, callbacks=callbacks)


def _run_module(module: str, argv: list[str]) -> None:
    """Run `python -m module argv` as its own process (its CLI exactly as a user runs it)."""
    import torch

    command = [sys.executable, "-m", module, *argv]
    log.info("running %s", " ".join(command))
    env = os.environ | {"OMP_NUM_THREADS": str(torch.get_num_threads())}  # the same CPU share as this process
    result = subprocess.run(command, check=False, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {result.returncode}")
