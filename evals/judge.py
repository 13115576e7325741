"""The optional LLM-judge answer extractor: any chat model reads a response and states its answer.

Off by default. When on, it reads every response; the answer it names is graded by the same
grader as the rules' answer (MathVerse's official judge scores its extraction against the gold
answer itself), and both verdicts are kept in the sample record, so a report shows where they
disagree. The judge decides a sample only when the rules find no answer in it.

Prompts (`evals.judge_prompts`): `--judge-prompt official` (default) reads each benchmark's
responses with its official pipeline's prompt (`Benchmark.judge_prompt`), or the generic prompt
where that pipeline has no LLM step or the sample lacks what the prompt needs (`JudgeChoice` says
which, and why); `generic` uses the generic prompt throughout. Every judge call's reply is kept in the
caption cache (`evals.cache.judge_key`), so a re-run over the same outputs makes no judge call.
"""

from __future__ import annotations

import threading
from typing import Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from pydantic import BaseModel

from evals.cache import Entry, PerceptionCache, judge_key
from evals.judge_prompts import GENERIC, JudgePrompt
from evals.sample import Sample
from evals.scoring import Grade, grade_prediction
from evals.tasks import get_benchmark
from rapid_agent.answers import strip_think
from rapid_agent.models.spec import GenerationSettings

PromptMode = Literal["official", "generic"]
PROMPT_MODES: tuple[PromptMode, ...] = ("official", "generic")


class JudgeVerdict(BaseModel):
    """What the judge said, the answer read from it (None: no answer, or the judge failed), and the
    verdicts on one output: `correct` is the judge's verdict (None when the judge failed): its answer
    graded, or its own `judgement` where its prompt scores (MathVerse); `rule_correct` the rules'.
    `prompt` is the judge prompt's `name@version`."""

    model: str
    prompt: str | None = None
    output: str | None = None
    answer: str | None = None
    score_output: str | None = None
    judgement: bool | None = None
    error: str | None = None
    correct: bool | None = None
    rule_correct: bool | None = None

    @property
    def disagrees(self) -> bool:
        """The judge's verdict differs from the rules' (a failed judge never disagrees)."""
        return self.correct is not None and self.rule_correct is not None and self.correct != self.rule_correct


class JudgeChoice(BaseModel):
    """The prompt a benchmark's samples are judged with, and why (for notices and the report)."""

    benchmark: str
    prompt: str
    source: str
    note: str

    def describe(self) -> str:
        return f"{self.benchmark}: {self.prompt} prompt ({self.source})" + (f"; {self.note}" if self.note else "")


def choose_prompt(benchmark: str, mode: PromptMode) -> JudgeChoice:
    """Which prompt `mode` uses for `benchmark`'s samples (see the module docstring)."""
    official = get_benchmark(benchmark).judge_prompt
    if mode == "generic":
        return JudgeChoice(benchmark=benchmark, prompt=GENERIC.name, source=GENERIC.source, note="--judge-prompt generic")
    if official is None:
        return JudgeChoice(benchmark=benchmark, prompt=GENERIC.name, source=GENERIC.source,
                           note="no official pipeline with an LLM step is known for it")
    if official.prompt is None:
        return JudgeChoice(benchmark=benchmark, prompt=GENERIC.name, source=GENERIC.source,
                           note=f"its official pipeline, {official.pipeline}, has no LLM step" +
                           (f" ({official.note})" if official.note else ""))
    return JudgeChoice(benchmark=benchmark, prompt=f"official {official.prompt.name}", source=official.prompt.source,
                       note=f"pipeline {official.pipeline}" + (f"; {official.note}" if official.note else ""))


def prompt_for(sample: Sample, mode: PromptMode) -> JudgePrompt:
    """The prompt one sample is judged with: the official one unless `mode` is generic, the benchmark
    has none, or the sample lacks the options it needs."""
    official = get_benchmark(sample.benchmark).judge_prompt if mode == "official" else None
    prompt = official.prompt if official is not None else None
    if prompt is None or (prompt.needs_options and not sample.options):
        return GENERIC
    return prompt


def judge_grade(sample: Sample, verdict: JudgeVerdict) -> Grade | None:
    """The judge's verdict as a grade: its own judgement where its prompt scores, else its answer
    graded like the rules' (None: the judge failed, or named no answer and gave no judgement)."""
    if verdict.error is not None:
        return None
    if verdict.judgement is not None:
        return Grade(prediction=verdict.answer, correct=verdict.judgement, method="judge:score")
    return grade_prediction(sample, verdict.answer, via="judge") if verdict.answer is not None else None


class Judge:
    """Wraps a chat model as an answer extractor with the prompts `mode` picks, its calls cached in
    `cache` under `identity` (the model's weights; see `evals.cache.judge_key`)."""

    def __init__(
        self, model: BaseChatModel, name: str, *, mode: PromptMode = "official", cache: PerceptionCache | None = None,
        identity: str | None = None, generation: GenerationSettings | None = None, seed: int = 0,
    ) -> None:
        self.model, self.name, self.mode, self.cache = model, name, mode, cache
        self.identity, self.generation, self.seed = identity or name, generation or GenerationSettings(), seed
        self.calls = self.cache_hits = 0
        self._lock = threading.Lock()  # one SQLite connection, and the counters, across the judging threads

    def extract(self, sample: Sample, response: str) -> JudgeVerdict:
        """Read `response`'s answer (and, for a scoring prompt, score it); a failure is recorded, never raised."""
        prompt = prompt_for(sample, self.mode)
        verdict = JudgeVerdict(model=self.name, prompt=prompt.label)
        try:
            verdict.output = self._call("judge-extract", prompt, prompt.extract(sample, response))
            verdict.answer = prompt.read(sample, strip_think(verdict.output))
            if prompt.score is not None and prompt.read_score is not None:
                verdict.score_output = self._call("judge-score", prompt, prompt.score(sample, strip_think(verdict.output)))
                verdict.judgement = prompt.read_score(strip_think(verdict.score_output))
                if verdict.judgement is None:
                    verdict.error = f"unreadable judgement {verdict.score_output[:200]!r}"
        except Exception as exc:  # a judge failure leaves the sample unanswered, never correct
            verdict.error = f"{type(exc).__name__}: {exc}"
        return verdict

    def _call(self, kind: Literal["judge-extract", "judge-score"], prompt: JudgePrompt, messages: list[BaseMessage]) -> str:
        """The judge's reply to `messages`: from the cache, or from the model (then cached)."""
        sent = [(m.type, m.text) for m in messages]
        key = judge_key(kind, self.identity, prompt.label, sent, self.generation, self.seed)
        if self.cache is not None:
            with self._lock:
                entry = self.cache.get(key)
            if entry is not None:
                with self._lock:
                    self.cache_hits += 1
                return entry.text
        reply = self.model.invoke(messages)
        with self._lock:
            self.calls += 1
            if self.cache is not None:
                usage = dict(reply.usage_metadata or {}) | {"node": kind}
                self.cache.put(key, kind, self.identity, prompt.label, Entry(text=reply.text, usage=usage))
        return reply.text
