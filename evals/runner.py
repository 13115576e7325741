"""Running an eval: one perception pass, then each run's reasoning pass, through the core graph.

1. **Perception.** For every sample some run still needs, the captioner's caption (and tentative
   answer) come from the `PerceptionCache`, or from the graph stopped before `reason`
   (`interrupt_before=["reason"]`) and are then cached. K reasoners thus cost one captioning pass,
   and a re-run costs none.
2. **Reasoning.** Each run feeds the cached outputs to the graph as `captions` / `tentative_answer`
   (decoupled), or an empty caption with the `blind` preset (blind); direct mode grades the
   MLLM's tentative answer itself. Requests run concurrently (`graph.batch_as_completed`, at most
   `concurrency` at once; local HF models micro-batch them); transient errors are retried with
   backoff by the graph's retry policy; every finished sample is appended to `samples.jsonl` at
   once, failures included, as errors: a failed backend is an *error*, never a wrong answer, and an
   output the graph reports as cut off by its token limit is recorded as `truncated`, with no answer
   (the answer contract: `rapid_agent.answers`). With a judge, every output is also read by the
   judge, with the prompt `--judge-prompt` picks per benchmark (printed once), and both verdicts are
   kept (see `evals.judge`); its replies are cached beside the captions.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.types import RetryPolicy
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from evals.cache import Entry, PerceptionCache, image_hash, perception_key
from evals.config import EvalConfig, RunSpec
from evals.console import describe_record
from evals.judge import Judge, JudgeVerdict, choose_prompt, judge_grade
from evals.precheck import check_endpoints
from evals.report import Summary, record_status, write_reports
from evals.sample import Sample
from evals.scoring import Grade, grade_prediction, grade_sample
from evals.store import RunStore, SampleRecord, VoteRecord
from evals.tasks import get_benchmark
from rapid_agent.errors import BackendError
from rapid_agent.graph import DEFAULT_RETRY, build_rapid_graph
from rapid_agent.models.identity import model_identity
from rapid_agent.models.spec import ModelResolver
from rapid_agent.prompts import get_preset
from rapid_agent.voting import vote_answers

PLACEHOLDER = "(cached)"  # stands in for a cached output so the graph skips the node that makes it


def default_cache_path() -> Path:
    return Path.home() / ".cache" / "rapid-agent" / "eval-perception.sqlite"


class RunOptions(BaseModel):
    """How to execute (none of it changes results)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    output_dir: Path
    resume: bool = False
    concurrency: int = Field(8, gt=0)
    retries: int = Field(3, ge=0, description="Extra attempts for transient backend errors.")
    retry_initial_s: float = Field(1.0, ge=0, description="First backoff wait; doubles per attempt (max 30 s).")
    cache_path: Path | None = Field(
        default_factory=default_cache_path, description="None: captions live in memory for this invocation only."
    )
    show: int = Field(3, ge=0, description="Samples printed in full per run.")
    progress: bool = True


class RunResult(BaseModel):
    """What an eval produced, and what this invocation did (captioner calls by output: the paper-eval
    preset asks for a caption and a tentative answer per sample, two calls in one pass; `cache_hits`
    counts captioner outputs, `judge_cache_hits` judge replies read from the cache)."""

    output_dir: Path
    summary: Summary
    caption_calls: int
    tentative_calls: int
    cache_hits: int
    new_records: int
    errors: int
    truncated: int
    judge_calls: int = 0
    judge_cache_hits: int = 0

    @property
    def captioner_calls(self) -> int:
        return self.caption_calls + self.tentative_calls


@dataclass
class _Item:
    bench: str
    sample: Sample


@dataclass
class _Percept:
    captions: list[str | None]  # one per captioner of the configuration
    tentative: str | None = None
    usage: list[dict[str, Any]] = field(default_factory=list)
    cached: bool = True
    error: str | None = None


def run_eval(config: EvalConfig, options: RunOptions, *, models: Mapping[str, BaseChatModel] | None = None) -> RunResult:
    """Run an eval to completion (see the module docstring); `models` maps spec names to model objects."""
    return Evaluator(config, options, models=models).run()


class Evaluator:
    """One eval invocation: loads samples, opens the output folder, runs the passes, writes reports."""

    def __init__(self, config: EvalConfig, options: RunOptions, *, models: Mapping[str, BaseChatModel] | None = None):
        self.config, self.options, self.models = config, options, dict(models or {})
        self.preset = get_preset(config.prompt_preset)
        self.resolver = ModelResolver({"captioner": config.captioner_generation, "reasoner": config.reasoner_generation})
        retry = RetryPolicy(
            max_attempts=options.retries + 1, initial_interval=options.retry_initial_s, backoff_factor=2.0,
            max_interval=30.0, jitter=True, retry_on=DEFAULT_RETRY.retry_on,
        )
        self.graph = build_rapid_graph(resolver=self.resolver, retry_policy=retry)
        self.perception_calls = {"caption": 0, "tentative": 0}
        self.new_records = 0
        self.judge: Judge | None = None

    def model(self, spec: str, role: str) -> BaseChatModel:
        return self.models[spec] if spec in self.models else self.resolver.resolve(spec, role)

    def run(self) -> RunResult:
        random.seed(self.config.seed)
        _seed_torch(self.config.seed)
        # the folder is held (one run at a time) from before anything loads until its reports are written
        with RunStore.open(self.options.output_dir, self.config.identity(), resume=self.options.resume) as store:
            return self._run(store)

    def _run(self, store: RunStore) -> RunResult:
        items = [
            _Item(ref.label, s)
            for ref in self.config.benchmarks
            for s in get_benchmark(ref.name).load(ref.split, ref.path, self.config.limit)
        ]
        cache = PerceptionCache(self.options.cache_path) if self.options.cache_path else None
        try:
            done = {r.key for r in store.records() if r.error is None}
            runs = self.config.runs()
            todo = {run.label: [i for i in items if (run.label, i.bench, i.sample.id) not in done] for run in runs}
            pending_runs = [run for run in runs if todo[run.label]]
            check_endpoints(
                [("reasoner", run.reasoner) for run in pending_runs if run.reasoner]
                + ([("judge", self.config.judge)] if self.config.judge else [])
                + ([("captioner", c) for c in self.config.captioners] if self.config.max_recaption_rounds and pending_runs else []),
                skip=self.models, resolve=self.resolver.resolve,
            )
            percepts = self._perceive(runs, todo, cache)
            judge = self.judge = self._judge(cache) if self.config.judge and pending_runs else None
            for run in pending_runs:
                self._reason(run, todo[run.label], percepts, store, judge)
        finally:
            if cache is not None:
                cache.close()
        records = store.records()
        judge_hits = self.judge.cache_hits if self.judge else 0
        summary = write_reports(
            records, self.options.output_dir, config=self.config.identity(), seed=self.config.seed,
            order=[run.label for run in self.config.runs()],
        )
        return RunResult(
            output_dir=self.options.output_dir, summary=summary, caption_calls=self.perception_calls["caption"],
            tentative_calls=self.perception_calls["tentative"],
            cache_hits=cache.hits - judge_hits if cache is not None else 0,  # the judge's hits are counted apart
            new_records=self.new_records, errors=sum(r.error is not None for r in records),
            truncated=sum(record_status(r) == "truncated" for r in records),
            judge_calls=self.judge.calls if self.judge else 0, judge_cache_hits=judge_hits,
        )

    # ------------------------------------------------------------------ perception

    def _perceived(self, run: RunSpec) -> set[str]:
        """The captioner outputs a run uses: its caption and/or tentative answer (none when blind)."""
        if run.mode == "decoupled":
            return {"caption"} | ({"tentative"} if self.preset.uses_tentative else set())
        return {"tentative"} if run.mode == "direct" else set()

    def _perceive(self, runs: list[RunSpec], todo: dict[str, list[_Item]], cache: PerceptionCache | None) -> dict:
        """Caption(s) (and tentative answer) of every sample a pending run needs, from cache or the graph:
        one pass per captioner of a captioner list (each cached under its own identity), the tentative
        answer from the first."""
        kinds: dict[tuple[str, str], set[str]] = {}
        for run in runs:
            wanted = self._perceived(run)
            for item in todo[run.label] if wanted else []:
                kinds.setdefault((item.bench, item.sample.id), set()).update(wanted)
        by_key = {(i.bench, i.sample.id): i for items in todo.values() for i in items}
        percepts = {key: _Percept(captions=[None] * len(self.config.captioners)) for key in kinds}
        for index, spec in enumerate(self.config.captioners):
            own = {"caption"} | ({"tentative"} if index == 0 else set())
            needed = {key: wanted & own for key, wanted in kinds.items() if wanted & own}
            self._perceive_with(index, spec, needed, by_key, percepts, cache)
        return percepts

    def _perceive_with(
        self, index: int, spec: str, kinds: dict[tuple[str, str], set[str]], by_key: dict[tuple[str, str], _Item],
        percepts: dict[tuple[str, str], _Percept], cache: PerceptionCache | None,
    ) -> None:
        """The outputs `kinds` of captioner `index` (`spec`), from the cache or the graph, into `percepts`."""
        if not kinds:
            return
        captioner_id = spec if spec in self.models else model_identity(spec)
        pending: list[tuple[tuple[str, str], dict[str, str], dict[str, Any]]] = []
        for key, needed in kinds.items():
            sample = by_key[key].sample
            hashes = [image_hash(src) for src in sample.images]
            keys = {
                kind: perception_key(kind, captioner_id, self.preset, hashes, sample.question,
                                     sample.prompt_options,
                                     self.config.captioner_generation, self.config.seed)
                for kind in sorted(needed)
            }
            found = {kind: cache.get(k) for kind, k in keys.items()} if cache else {}
            percept = percepts[key]
            for kind, entry in found.items():
                if entry is not None:
                    _keep(percept, index, kind, entry.text)
                    percept.usage.append(entry.usage)
            missing = {kind: k for kind, k in keys.items() if found.get(kind) is None}
            if missing:
                inputs = _graph_input(sample, images=True)
                if "caption" not in missing:
                    inputs["captions"] = [PLACEHOLDER]
                if "tentative" not in missing:
                    inputs["tentative_answer"] = PLACEHOLDER
                pending.append((key, missing, inputs))
        if not pending:
            return
        check_endpoints([("captioner", spec)], skip=self.models, resolve=self.resolver.resolve)
        preset = self.preset.model_copy(update={"uses_tentative": any("tentative" in m for _, m, _ in pending)})
        context = {"captioner": self.model(spec, "captioner"), "prompt_preset": preset}
        desc = "perception (captioner)" if len(self.config.captioners) == 1 else f"perception ({spec})"
        with self._bar(len(pending), desc) as bar:
            for done, out in self.graph.batch_as_completed(
                [inputs for _, _, inputs in pending], {"max_concurrency": self.options.concurrency},
                return_exceptions=True, context=context, interrupt_before=["reason"],
            ):
                key, missing, _ = pending[done]
                percept = percepts[key]
                percept.cached = False
                if isinstance(out, BaseException):
                    percept.error = f"perception failed: {_describe(out)}"
                for usage in [] if isinstance(out, BaseException) else out.get("usage", []):
                    kind = usage["node"]
                    if kind in missing:
                        self.perception_calls[kind] += 1
                        text = out["captions"][0] if kind == "caption" else out.get("tentative_answer") or ""
                        _keep(percept, index, kind, text)
                        percept.usage.append(dict(usage))
                        if cache is not None:
                            cache.put(missing[kind], kind, captioner_id, self.preset.key, Entry(text=text, usage=dict(usage)))
                bar.update(1)

    # ------------------------------------------------------------------ reasoning

    def _judge(self, cache: PerceptionCache | None) -> Judge:
        """The judge, its calls cached under its weights' identity; says which prompt each benchmark gets."""
        spec, mode = self.config.judge, self.config.judge_prompt
        for name in dict.fromkeys(ref.name for ref in self.config.benchmarks):
            tqdm.write(f"judge prompt: {choose_prompt(name, mode).describe()}")
        return Judge(self.model(spec, "reasoner"), spec, mode=mode, cache=cache,
                     identity=spec if spec in self.models else model_identity(spec),
                     generation=self.config.reasoner_generation, seed=self.config.seed)

    def _reason(self, run: RunSpec, items: list[_Item], percepts: dict, store: RunStore, judge: Judge | None) -> None:
        """Run one report row over its pending samples, appending each record as it finishes."""
        stats = {"correct": 0, "done": 0, "errors": 0, "truncated": 0}
        with self._bar(len(items), run.label) as bar, ThreadPoolExecutor(self.options.concurrency) as judging:

            def finish(record: SampleRecord) -> None:
                store.append(record)
                self.new_records += 1
                stats["done"] += 1
                stats["correct"] += record.correct
                stats["errors"] += record.error is not None
                stats["truncated"] += record_status(record) == "truncated"
                bar.set_postfix(acc=f"{stats['correct'] / stats['done']:.1%}", errors=stats["errors"],
                                truncated=stats["truncated"], refresh=False)
                bar.update(1)
                if stats["done"] <= self.options.show:
                    tqdm.write(describe_record(record))

            judged: dict[Future, tuple[_Item, _Percept | None, dict[str, Any]]] = {}

            def complete(item: _Item, percept: _Percept | None, out: dict[str, Any] | BaseException) -> None:
                if isinstance(out, BaseException):
                    finish(self._record(run, item, percept, error=_describe(out)))
                elif judge is not None:  # the judge reads every output; its verdict is set against the rules'
                    judged[judging.submit(judge.extract, item.sample, out["reasoning"] or "")] = (item, percept, out)
                else:
                    finish(self._graded(run, item, percept, out))
                for future in [f for f in judged if f.done()]:
                    finish(self._graded(run, *judged.pop(future), verdict=future.result()))

            for item, percept, out in self._outputs(run, items, percepts):
                complete(item, percept, out)
            for future in as_completed(list(judged)):
                finish(self._graded(run, *judged.pop(future), verdict=future.result()))

    def _outputs(self, run: RunSpec, items: list[_Item], percepts: dict):
        """(item, percept, graph output or exception) per sample, as they finish."""
        ready = []
        for item in items:
            percept = None if run.mode == "blind" else percepts.get((item.bench, item.sample.id))
            if percept is not None and percept.error:
                yield item, percept, BackendError(percept.error)
            elif run.mode == "direct":  # the MLLM's own answer, from the perception pass
                yield item, percept, {"reasoning": percept.tentative or "", "usage": []}
            else:
                ready.append((item, percept))
        if not ready:
            return
        inputs = [self._reason_input(run, item, percept) for item, percept in ready]
        for index, out in self.graph.batch_as_completed(
            inputs, {"max_concurrency": self.options.concurrency}, return_exceptions=True, context=self._reason_context(run),
        ):
            item, percept = ready[index]
            if not isinstance(out, BaseException):
                out = {**out, "captions": None if run.mode == "blind" else out.get("captions")}  # blind: a stand-in ""
            yield item, percept, out

    def _reason_input(self, run: RunSpec, item: _Item, percept: _Percept | None) -> dict[str, Any]:
        if run.mode == "blind":
            return _graph_input(item.sample, images=False) | {"captions": [""]}
        recaption = self.config.max_recaption_rounds > 0
        return _graph_input(item.sample, images=recaption) | {
            "captions": [caption or "" for caption in percept.captions], "tentative_answer": percept.tentative or "",
        }

    def _reason_context(self, run: RunSpec) -> dict[str, Any]:
        reasoner, samples = self.model(run.reasoner, "reasoner"), self.config.reasoner_samples
        if run.mode == "blind":
            return {"reasoner": reasoner, "prompt_preset": get_preset("blind"), "max_recaption_rounds": 0,
                    "reasoner_samples": samples}
        recaption = self.config.max_recaption_rounds > 0
        captioners = [self.model(spec, "captioner") for spec in self.config.captioners]
        return {
            "reasoner": reasoner,
            "reasoner_samples": samples,
            "captioner": (captioners if len(captioners) > 1 else captioners[0]) if recaption else None,
            # the tentative answer comes from the perception pass: never ask the captioner again
            "prompt_preset": self.preset.model_copy(update={"uses_tentative": False}),
            "max_recaption_rounds": self.config.max_recaption_rounds,
        }

    def _graded(
        self, run: RunSpec, item: _Item, percept: _Percept | None, out: dict[str, Any], verdict: JudgeVerdict | None = None,
    ) -> SampleRecord:
        """The record of a finished output: the rules' verdict, or the judge's where the rules find no answer."""
        sample, output, usage = item.sample, out["reasoning"] or "", out.get("usage", [])
        truncated = bool(out.get("truncated", False))  # set by the graph when the reasoner hit its token limit
        grade = grade_sample(sample, output, truncated=truncated)  # the answer contract: see rapid_agent.answers
        if verdict is not None:
            judged = judge_grade(sample, verdict)
            verdict = verdict.model_copy(update={
                "correct": None if verdict.error else judged is not None and judged.correct, "rule_correct": grade.correct,
            })
            if grade.prediction is None and judged is not None:
                grade = judged
        votes = None
        if out.get("vote"):  # k samples: each graded as any output, the vote over those predictions
            grade, votes = _voted(sample, out["vote"]["samples"])
        latency = sum(u["latency_s"] for u in (usage or (percept.usage if percept else [])))
        return self._record(run, item, percept, captions=out.get("captions")).model_copy(update={
            "output": output, "prediction": grade.prediction, "correct": grade.correct, "method": grade.method,
            "judge": verdict, "usage": [dict(u) for u in usage], "latency_s": latency,
            "truncated": truncated, "votes": votes,
        })

    def _record(self, run: RunSpec, item: _Item, percept: _Percept | None, *, error: str | None = None,
                captions: list[str] | None = None) -> SampleRecord:
        sample = item.sample
        return SampleRecord(
            run=run.label, mode=run.mode, captioner=None if run.mode == "blind" else self.config.captioner_name,
            reasoner=run.reasoner, benchmark=item.bench, id=sample.id, question=sample.question,
            options=list(sample.options) if sample.options else None, gold=[sample.answer, *sample.alt_answers],
            captions=captions or ([c for c in percept.captions if c is not None] if percept else []),
            tentative_answer=percept.tentative if percept else None, error=error,
            perception_cached=percept.cached if percept else None,
            perception_usage=[u for u in percept.usage if u["node"] in self._perceived(run)] if percept else [],
            metadata=sample.metadata,
        )

    def _bar(self, total: int, desc: str) -> tqdm:
        return tqdm(total=total, desc=desc, unit="sample", disable=not self.options.progress, dynamic_ncols=True)


def _keep(percept: _Percept, index: int, kind: str, text: str) -> None:
    """Store captioner `index`'s output of `kind` (a caption, or the first captioner's tentative answer)."""
    if kind == "caption":
        percept.captions[index] = text
    else:
        percept.tentative = text


def _voted(sample: Sample, samples: list[dict[str, Any]]) -> tuple[Grade, VoteRecord]:
    """Each reasoner sample graded as any output (the answer contract), and the library's vote over
    those predictions, with the sample's options: the vote's answer graded is the record's."""
    grades = [grade_sample(sample, s["reasoning"], truncated=s["truncated"]) for s in samples]
    outcome, answer, _ = vote_answers([g.prediction for g in grades], sample.options)
    grade = (grade_prediction(sample, answer, via="vote") if answer is not None
             else Grade(prediction=None, correct=False, method=f"vote:{outcome}"))
    return grade, VoteRecord(outcome=outcome, outputs=[s["reasoning"] for s in samples],
                             predictions=[g.prediction for g in grades], correct=[g.correct for g in grades])


def _graph_input(sample: Sample, *, images: bool) -> dict[str, Any]:
    inputs: dict[str, Any] = {"question": sample.question}
    if sample.prompt_options:
        inputs["options"] = sample.prompt_options
    if images:
        inputs["images"] = list(sample.images)
    return inputs


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


def _seed_torch(seed: int) -> None:
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(seed)
