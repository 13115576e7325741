"""One request validator: the graph and the served guard refuse the same bad input with the same message."""

from __future__ import annotations

import pytest

from rapid_agent import build_rapid_graph
from rapid_agent.errors import InputError
from rapid_agent.serving.graphs import graph_from_settings
from rapid_agent.serving.guard import check_input
from rapid_agent.serving.settings import ServeSettings
from rapid_agent.testing import echo_captioner, fact_reasoner
from rapid_agent.validation import TextLimit, validate_request

LIMIT = 40
SETTINGS = ServeSettings(captioner="c", reasoner="r", max_text_chars=LIMIT)
GOOD = {"question": "How many circles?", "captions": ["three red circles"]}

BAD_INPUTS = {
    "no-question": {"captions": ["c"]},
    "blank-question": {"question": "  ", "captions": ["c"]},
    "question-not-text": {"question": 7, "captions": ["c"]},
    "long-question": {"question": "q" * (LIMIT + 1), "captions": ["c"]},
    "image-tags-only": {"question": "<image 1> <image 2>", "captions": ["c"]},
    "options-not-list": GOOD | {"options": "A, B"},
    "blank-option": GOOD | {"options": ["A", " "]},
    "option-not-text": GOOD | {"options": ["A", 3]},
    "too-many-options": GOOD | {"options": [f"o{i}" for i in range(27)]},
    "long-option": GOOD | {"options": ["A", "o" * (LIMIT + 1)]},
    "captions-not-list": GOOD | {"captions": "a caption"},
    "caption-not-text": GOOD | {"captions": [None]},
    "long-caption": GOOD | {"captions": ["c" * (LIMIT + 1)]},
    "tentative-not-text": GOOD | {"tentative_answer": 3},
    "long-tentative": GOOD | {"tentative_answer": "t" * (LIMIT + 1)},
}


def refusal(call) -> str:
    with pytest.raises(InputError) as caught:
        call()
    return str(caught.value)


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_graph_and_served_guard_refuse_alike(name):
    bad = BAD_INPUTS[name]
    library = build_rapid_graph(echo_captioner(), fact_reasoner({}), max_text_chars=SETTINGS.text_limit())
    from_graph = refusal(lambda: library.invoke(bad))
    from_guard = refusal(lambda: check_input(bad, SETTINGS))
    assert from_graph == from_guard
    assert from_guard.startswith("input.")


def test_each_caller_names_its_own_limit_setting():
    long = {"question": "q" * 41}
    assert refusal(lambda: validate_request(long, TextLimit(max_chars=40))) == (
        "input.question has 41 characters; the limit is 40 (max_text_chars)"
    )
    assert refusal(lambda: check_input(long, SETTINGS)) == (
        "input.question has 41 characters; the limit is 40 (RAPID_MAX_TEXT_CHARS)"
    )


def test_the_served_graph_uses_the_served_limit():
    served = graph_from_settings(SETTINGS.model_copy(update={"captioner": "tiny", "reasoner": "tiny"}))
    message = refusal(lambda: served.invoke({"question": "q" * 41, "captions": ["c"]}))
    assert message.endswith("(RAPID_MAX_TEXT_CHARS)")


def test_a_good_request_passes_both():
    validate_request(GOOD | {"options": ["2", "3"], "tentative_answer": "3"}, TextLimit(max_chars=LIMIT))
    check_input(GOOD | {"options": ["2", "3"]}, SETTINGS)
