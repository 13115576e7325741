"""The optional LLM-judge answer extractor: any chat model reads a response and states its answer.

Off by default. When on, it reads every response; the answer it names is graded by the same
grader as the rules' answer, and both verdicts are kept in the sample record, so a report shows
where they disagree. The judge decides a sample only when the rules find no answer in it.
"""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel

from evals.sample import Sample
from rapid_agent.answers import extract_answer
from rapid_agent.prompts import format_question

JUDGE_SYSTEM = (
    "You read a model's response to a question and report the final answer the response gives. "
    "Do not solve the question yourself and do not correct the response."
)
JUDGE_USER = (
    "Question:\n{question}\n\nModel response:\n{response}\n\n"
    "What final answer does the response give? For a multiple-choice question give the option letter. "
    "Reply with a single line 'Answer: <answer>', or 'Answer: none' if the response gives no final answer."
)
MAX_RESPONSE_CHARS = 6000  # the tail of long responses, where the conclusion is


class JudgeVerdict(BaseModel):
    """What the judge said, the answer read from it (None: no answer, or the judge failed), and the
    verdicts on one output: `correct` grades the judge's answer (None when the judge failed),
    `rule_correct` the rules' answer."""

    model: str
    output: str | None = None
    answer: str | None = None
    error: str | None = None
    correct: bool | None = None
    rule_correct: bool | None = None

    @property
    def disagrees(self) -> bool:
        """The judge's verdict differs from the rules' (a failed judge never disagrees)."""
        return self.correct is not None and self.rule_correct is not None and self.correct != self.rule_correct


class Judge:
    """Wraps a chat model as an answer extractor."""

    def __init__(self, model: BaseChatModel, name: str) -> None:
        self.model, self.name = model, name

    def messages(self, sample: Sample, response: str) -> list:
        question = format_question(sample.question, sample.prompt_options)
        text = JUDGE_USER.format(question=question, response=response[-MAX_RESPONSE_CHARS:])
        return [SystemMessage(JUDGE_SYSTEM), HumanMessage(text)]

    def extract(self, sample: Sample, response: str) -> JudgeVerdict:
        try:
            reply = self.model.invoke(self.messages(sample, response))
        except Exception as exc:  # a judge failure leaves the sample unanswered, never correct
            return JudgeVerdict(model=self.name, error=f"{type(exc).__name__}: {exc}")
        answer = extract_answer(reply.text, list(sample.options) if sample.options else None)
        if answer is not None and answer.strip().lower() in ("none", "no answer", "n/a"):
            answer = None
        return JudgeVerdict(model=self.name, output=reply.text, answer=answer)
