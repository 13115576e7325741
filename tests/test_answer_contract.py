"""The answer contract (`rapid_agent.answers`): for the same output and options, the graph's `answer`
is the eval harness's prediction, over a table of raw reasoner outputs and option lists."""

from __future__ import annotations

import re

import pytest
from langchain_core.messages import AIMessage, BaseMessage

from evals.sample import Sample
from evals.scoring import grade_sample
from rapid_agent.graph import build_rapid_graph
from rapid_agent.testing.scripted_models import ScriptedChatModel

OUTPUTS = [
    "\\boxed{14}",
    "The bars add up, so the answer is \\boxed{B}.",
    "\\boxed{1} and \\boxed{2}",
    "The answer is \\boxed{",  # an unclosed box
    "Answer: C",
    "Answer: $9$",
    "The correct option is (D).",
    "(B) 8/11",
    "B",
    "E.",
    "Comparing the bars.\nE",  # a lone letter: an answer only within the options given
    "Answer: blue",
    "Answer: the second tallest bar of all",  # an option's text: an answer only where that option is given
    "The answer is 12 cm.",
    "So the value of bar C is 10.",
    "14",
    "4.5 kg",
    "Answer: 25%",
    "\\boxed{3\\text{ m}}",
    "<answer>A</answer>",
    '{"short answer": "7"}',
    "<think>Maybe \\boxed{1}.</think>So it is \\boxed{2}.",
    "<think>Counting the bars, \\boxed{4} maybe, then",  # cut off inside its thinking
    "The answer is \\boxed{3}.\n<think>Let me double-check the",  # answered, then cut off inside new thinking
    "Answer: 5. Let me verify: 2 + 3 =",
    "I count 3 circles, not 14.",
    "I am not sure what the chart shows.",
    "",
    "x " * 5000 + "\nThe answer is 5.",
    "Option A is wrong, B too. Final answer: red",
    "(B)\n\nBar B is the tallest of all bars shown.",  # MATH-V: a first line that is a letter
    "(A)\n\nChecking again, the answer is (C).",  # two different options: no answer
    "Comparing heights, we round up to get D.",  # MATH-V: a last sentence ending with a letter
    "The tallest bar is painted red.",  # MMMU: an option's text ending the sentence (where that option is given)
    "Selection from the options:\nD. 8/11",  # a letter with its option's text
]
OPTION_LISTS = {
    "none": None,
    "letters": ["A", "B", "C", "D"],
    "texts": ["red", "12 cm", "the second tallest bar of all", "8/11"],
}
THINKING = "Bar C is the tallest; maybe \\boxed{9}? Answer: 9"
CASES = [
    (output, finish, thinking)
    for output in OUTPUTS
    for finish in ("stop", "length")
    for thinking in (None, THINKING)
]
"""(reply text, finish reason, a reasoning parser's separate thinking) of each scripted reply."""


def _case(messages: list[BaseMessage]) -> tuple[str, str, str | None]:
    return CASES[int(re.search(r"Q(\d+):", messages[-1].text)[1])]


class Reasoner(ScriptedChatModel):
    """Replies to question `Q<i>:` with `CASES[i]`, its finish reason and separate thinking included."""

    def _reply(self, messages: list[BaseMessage], fail: bool) -> AIMessage:
        _, finish, thinking = _case(messages)
        return super()._reply(messages, fail).model_copy(update={
            "response_metadata": {"finish_reason": finish},
            "additional_kwargs": {"reasoning_content": thinking} if thinking else {},
        })


@pytest.mark.parametrize("options", OPTION_LISTS.values(), ids=OPTION_LISTS.keys())
def test_the_graph_answer_is_the_harness_prediction(options):
    graph = build_rapid_graph(reasoner=Reasoner(respond=lambda messages: _case(messages)[0]))
    questions = [f"Q{i}: Which bar is tallest?" for i in range(len(CASES))]
    outs = graph.batch(
        [{"question": q, "captions": ["Bars: A 3, B 12, C 14."]} | ({"options": options} if options else {})
         for q in questions],
        {"max_concurrency": 8},
    )
    for question, out, (output, finish, thinking) in zip(questions, outs, CASES, strict=True):
        sample = Sample(id=question, benchmark="contract", question=question,
                        options=tuple(options) if options else None, answer="A")
        harness = grade_sample(sample, out["reasoning"], truncated=out["truncated"]).prediction
        assert out["answer"] == harness, (output, finish, thinking)
    answers = [out["answer"] for out in outs]
    assert sum(a is not None for a in answers) >= len(CASES) // 3  # the table exercises real answers...
    assert sum(out["truncated"] for out in outs) >= len(OUTPUTS) // 2  # ...and truncated outputs (no answer)
    assert all(a is None for out, a in zip(outs, answers, strict=True) if out["truncated"])
