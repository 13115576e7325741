"""`EvalConfig`: everything that decides an eval's results (and so names its output folder).

How a run executes (concurrency, retries, cache file, printing) lives in `runner.RunOptions`
instead, so a resumed run may change those freely.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from evals.judge import PromptMode
from evals.store import Mode, config_digest
from evals.tasks import get_benchmark
from rapid_agent.errors import ConfigError
from rapid_agent.models.identity import model_identity
from rapid_agent.models.spec import GenerationSettings
from rapid_agent.prompts import get_preset

MODES: tuple[Mode, ...] = ("decoupled", "direct", "blind")
_REF = re.compile(r"^(?P<name>[A-Za-z0-9_-]+)(?::(?P<split>[A-Za-z0-9_.-]+))?(?:=(?P<path>.+))?$")


class BenchmarkRef(BaseModel):
    """A benchmark, its split (None: the default) and an optional local copy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    split: str
    path: str | None = None

    @classmethod
    def parse(cls, text: str) -> BenchmarkRef:
        """`NAME[:SPLIT][=PATH]`, e.g. `mathvista`, `mathverse:vision_only`, `mmmu=/data/MMMU`."""
        match = _REF.match(text.strip())
        if match is None:
            raise ConfigError(f"bad --benchmark {text!r}: expected NAME[:SPLIT][=PATH], e.g. mmmu:validation=/data/mmmu")
        bench = get_benchmark(match["name"])
        split, _ = bench.split(match["split"])
        path = match["path"]
        if path is not None and not Path(path).expanduser().exists():
            raise ConfigError(f"--benchmark {text!r}: local path {path!r} does not exist")
        return cls(name=bench.name, split=split, path=str(Path(path).expanduser().resolve()) if path else None)

    @property
    def label(self) -> str:
        """The benchmark's name, with the split when it is not the default one."""
        return self.name if self.split == get_benchmark(self.name).default_split else f"{self.name}:{self.split}"


class RunSpec(BaseModel):
    """One row of the report: a mode and the model that answers (the reasoner, or the MLLM in direct mode)."""

    model_config = ConfigDict(frozen=True)

    label: str
    mode: Mode
    reasoner: str | None


class EvalConfig(BaseModel):
    """What is evaluated: models, benchmarks, modes, prompts and decoding.

    `captioner` may be a list of specs: one captioner configuration whose descriptions the reasoner
    reads together, labelled (its identity is the list; the first gives the tentative answer; no direct
    mode). `reasoner_samples=k` answers each sample k times and grades the vote (vote@k, pass@k).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    captioner: str | tuple[str, ...] = "tiny"
    reasoners: tuple[str, ...] = ("tiny",)
    benchmarks: tuple[BenchmarkRef, ...] = Field(default_factory=lambda: (BenchmarkRef.parse("bundled"),))
    modes: tuple[Mode, ...] = ("decoupled",)
    prompt_preset: str = "paper-eval"
    max_recaption_rounds: int = Field(0, ge=0)
    limit: int | None = Field(None, gt=0)
    seed: int = 0
    captioner_generation: GenerationSettings = GenerationSettings()
    reasoner_generation: GenerationSettings = GenerationSettings()
    judge: str | None = None
    judge_prompt: PromptMode = "official"
    reasoner_samples: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _check(self) -> EvalConfig:
        get_preset(self.prompt_preset)
        if isinstance(self.captioner, tuple):
            if len(set(self.captioner)) != len(self.captioner) or len(self.captioner) < 2:
                raise ConfigError(f"a captioner list needs two or more distinct specs, got {list(self.captioner)}")
            if "direct" in self.modes:
                raise ConfigError("direct mode answers with one MLLM: run it with a single --captioner")
        if not self.benchmarks:
            raise ConfigError("no benchmark given")
        if not self.modes or len(set(self.modes)) != len(self.modes):
            raise ConfigError(f"modes must be distinct, one or more of {list(MODES)}; got {list(self.modes)}")
        if set(self.modes) & {"decoupled", "blind"} and not self.reasoners:
            raise ConfigError("decoupled and blind modes need at least one --reasoner")
        if len(set(self.reasoners)) != len(self.reasoners):
            raise ConfigError(f"a reasoner is listed twice: {list(self.reasoners)}")
        if len({b.label for b in self.benchmarks}) != len(self.benchmarks):
            raise ConfigError(f"a benchmark is listed twice: {[b.label for b in self.benchmarks]}")
        return self

    def runs(self) -> list[RunSpec]:
        """The report's rows: decoupled and blind per reasoner, direct once (the captioner alone)."""
        names = display_names([self.captioner_name, *self.reasoners])
        runs = []
        for mode in self.modes:
            if mode == "direct":
                runs.append(RunSpec(label=f"{names[self.captioner_name]} [direct]", mode=mode, reasoner=None))
            else:
                runs.extend(RunSpec(label=f"{names[r]} [{mode}]", mode=mode, reasoner=r) for r in self.reasoners)
        return runs

    def identity(self) -> dict[str, Any]:
        """The JSON form compared when a run is resumed (settings that cannot change results left out)."""
        data = self.model_dump(mode="json")
        if self.judge is None:
            del data["judge_prompt"]  # no judge: the setting decides nothing (and digests stay as before it)
        for role in ("captioner_generation", "reasoner_generation"):
            data[role] = {k: v for k, v in data[role].items() if k not in ("timeout_s", "max_batch_size")}
        # the weights behind each spec: a folder retrained (or a package upgraded) under the same
        # spec is another model, and its results must not be resumed into the old ones
        data["weights"] = {spec: _weights(spec) for spec in dict.fromkeys([*self.captioners, *self.reasoners])}
        if self.reasoner_samples == 1:  # configurations from before votes keep their digest
            del data["reasoner_samples"]
        return data

    @property
    def captioners(self) -> tuple[str, ...]:
        """The captioner specs: one, or the list."""
        return self.captioner if isinstance(self.captioner, tuple) else (self.captioner,)

    @property
    def captioner_name(self) -> str:
        """The captioner spec, or a list's specs joined by commas (as `--captioner` takes them)."""
        return ",".join(self.captioners)

    def digest(self) -> str:
        """Names the default output folder and tags each record (see `evals.store`)."""
        return config_digest(self.identity())


def _weights(spec: str) -> str:
    """`model_identity(spec)`; a name that is no spec (a model object handed to the runner) stands for itself."""
    try:
        return model_identity(spec)
    except ConfigError:
        return spec


def combined_digest(configs: list[EvalConfig]) -> str:
    """The digest of one configuration, or of several compared side by side (one per captioner)."""
    if len(configs) == 1:
        return configs[0].digest()
    return config_digest({"captioners": [c.identity() for c in configs]})


def captioner_folders(specs: list[str]) -> dict[str, str]:
    """A distinct, filesystem-safe sub-folder name per captioner spec (`miniworld:captioner-sft` → `captioner-sft`;
    a comma-joined captioner list: its specs' names joined by `+`)."""
    if len(set(specs)) != len(specs):
        raise ConfigError(f"a captioner is listed twice: {specs}")
    short = display_names([part for spec in specs for part in spec.split(",")])
    names = {
        spec: "+".join(re.sub(r"[^A-Za-z0-9._@-]+", "_", re.split(r"[:/]", short[part].rstrip("/"))[-1])
                       for part in spec.split(","))
        for spec in specs
    }
    if len(set(names.values())) < len(specs) or any(n.strip("._") == "" for n in names.values()):
        return {spec: f"captioner-{i}" for i, spec in enumerate(specs, 1)}
    return names


def display_names(specs: list[str]) -> dict[str, str]:
    """Short, unique names for model specs: `openai:/m/q7b@http://h:8000/v1` → `q7b@h:8000` (a captioner
    list's comma-joined name: its specs' names joined by `+`)."""
    short = {spec: "+".join(_short(part) for part in spec.split(",")) for spec in specs}
    if len(set(short.values())) < len(set(specs)):
        return {spec: spec for spec in specs}
    return short


def _short(spec: str) -> str:
    provider, _, rest = spec.partition(":")
    if provider == "openai" and "@" in rest:
        model, _, url = rest.rpartition("@")
        host = re.sub(r"^https?://", "", url).split("/")[0]
        return f"{Path(model).name or model}@{host}"
    if provider == "hf" and "/" in rest and Path(rest).expanduser().is_absolute():
        return Path(rest).name
    return spec
