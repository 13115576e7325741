"""Self-consistency (k reasoner samples and a vote) and captioner lists, in the graph and alone."""

from __future__ import annotations

import asyncio
import itertools
import threading

import pytest

from rapid_agent import ConfigError, RapidContext, build_rapid_graph
from rapid_agent.testing import ScriptedChatModel, echo_captioner
from rapid_agent.voting import count_votes, same_answer, vote_answers

QUESTION = {"question": "What fraction is shaded?", "captions": ["Half of the square is shaded."]}


def replies(*texts: str, **kwargs) -> ScriptedChatModel:
    """A reasoner answering `texts` in turn, one per call (thread-safe), then again from the start."""
    turn, lock = itertools.cycle(texts), threading.Lock()

    def respond(_messages) -> str:
        with lock:
            return next(turn)

    return ScriptedChatModel(respond=respond, **kwargs)


def human_text(call) -> str:
    content = call[-1].content
    return content if isinstance(content, str) else " ".join(p["text"] for p in content if p.get("type") == "text")


# ------------------------------------------------------------------ the vote itself


@pytest.mark.parametrize(
    ("answers", "options", "outcome", "winner", "counts"),
    [
        (["0.5", "1/2", "2"], None, "majority", "0.5", [2, 1]),
        (["\\frac{1}{2}", "0.5", None], None, "majority", "\\frac{1}{2}", [2]),
        (["B", "eight", "A"], ["seven", "eight"], "majority", "B", [2, 1]),
        (["3", "3.0", "4", "4"], None, "tie", None, [2, 2]),
        (["A", "B"], ["x", "y"], "tie", None, [1, 1]),
        ([None, None, None], None, "no_answer", None, []),
        ([], None, "no_answer", None, []),
        (["7"], None, "majority", "7", [1]),
    ],
    ids=["fraction-spellings", "latex-and-decimal", "option-text-is-its-letter", "tie-of-two-pairs",
         "tie-of-letters", "no-answer", "no-samples", "one-sample"],
)
def test_equal_answers_are_one_vote_and_ties_are_reported(answers, options, outcome, winner, counts):
    got_outcome, got_winner, got_counts = vote_answers(answers, options)
    assert (got_outcome, got_winner) == (outcome, winner)
    assert [c["votes"] for c in got_counts] == counts


@pytest.mark.parametrize(
    ("a", "b", "options", "same"),
    [("0.5", "1/2", None, True), ("1/2", "0.5", None, True), ("B", "y", ["x", "y"], True), ("2", "3", None, False),
     ("A", "B", ["x", "y"], False), ("", "0", None, False), ("cat", "dog", None, False)],
)
def test_same_answer_follows_the_grader_either_way_round(a, b, options, same):
    assert same_answer(a, b, options) is same


def test_counts_keep_the_first_spelling_and_put_the_most_votes_first():
    assert count_votes(["2", "1/2", "2.0", "0.5", "0.50"]) == [{"answer": "1/2", "votes": 3}, {"answer": "2", "votes": 2}]


# ------------------------------------------------------------------ votes in the graph


def test_k_samples_run_concurrently_and_the_majority_answer_wins():
    reasoner = replies("\\boxed{0.5}", "It is \\boxed{1/2}.", "\\boxed{2}", "Surely \\boxed{\\frac12}", "I cannot tell.",
                       wait_for_in_flight=5, gate_timeout_s=10)
    out = build_rapid_graph(reasoner=reasoner, reasoner_samples=5).invoke(QUESTION)
    vote = out["vote"]
    assert reasoner.max_in_flight == 5 and len(reasoner.calls) == 5  # five calls, all at once
    assert vote["outcome"] == "majority" and out["answer"] == vote["answer"]
    assert sorted(c["votes"] for c in vote["counts"]) == [1, 3]
    assert sorted(str(s["answer"]) for s in vote["samples"]) == sorted(["0.5", "1/2", "2", "\\frac12", "None"])
    assert out["reasoning"] in [s["reasoning"] for s in vote["samples"]]  # the first sample that gave the winner
    assert [u["node"] for u in out["usage"]] == ["reason"] * 5  # every call's tokens


def test_async_samples_run_concurrently_too():
    reasoner = replies("\\boxed{4}", wait_for_in_flight=3, gate_timeout_s=10)
    out = asyncio.run(build_rapid_graph(reasoner=reasoner, reasoner_samples=3).ainvoke(QUESTION))
    assert reasoner.max_in_flight == 3
    assert out["answer"] == "4" and out["vote"]["counts"] == [{"answer": "4", "votes": 3}]


def test_a_tie_is_reported_and_never_decided():
    out = build_rapid_graph(reasoner=replies("\\boxed{A}", "\\boxed{B}"), reasoner_samples=4).invoke(
        {**QUESTION, "options": ["a half", "a third"]}
    )
    assert out["vote"]["outcome"] == "tie"
    assert out["answer"] is None and out["reasoning"] is None and out["truncated"] is False
    assert [c["votes"] for c in out["vote"]["counts"]] == [2, 2]


def test_no_answer_in_any_sample_is_reported_as_such():
    out = build_rapid_graph(reasoner=replies("No idea.", "I cannot tell."), reasoner_samples=2).invoke(QUESTION)
    assert out["vote"]["outcome"] == "no_answer" and out["answer"] is None
    assert out["reasoning"] == out["vote"]["samples"][0]["reasoning"]


def test_one_sample_keeps_the_plain_output():
    out = build_rapid_graph(reasoner=replies("\\boxed{1/2}")).invoke(QUESTION)
    assert out["answer"] == "1/2" and out["vote"] is None and len(out["usage"]) == 1


def test_samples_per_call_and_bad_settings():
    reasoner = replies("\\boxed{1}")
    graph = build_rapid_graph(reasoner=reasoner)
    assert graph.invoke(QUESTION, context=RapidContext(reasoner_samples=3))["vote"]["counts"][0]["votes"] == 3
    assert graph.invoke(QUESTION, context={"reasoner_samples": 2})["vote"]["counts"][0]["votes"] == 2
    for bad in (0, True, "3", 1.5):
        with pytest.raises(ConfigError, match="reasoner_samples"):
            build_rapid_graph(reasoner=reasoner, reasoner_samples=bad)
        with pytest.raises(ConfigError, match="context.reasoner_samples"):
            graph.invoke(QUESTION, context={"reasoner_samples": bad})


@pytest.mark.parametrize(("asking", "recaptioned"), [(2, True), (1, False)], ids=["majority-asks", "minority-asks"])
def test_a_recaption_round_needs_more_than_half_of_the_samples(circles_image, asking, recaptioned):
    asks = ["<recaption>count the dots</recaption>"] * asking + ["\\boxed{5}"] * (3 - asking)
    reasoner = ScriptedChatModel(respond=lambda m: "\\boxed{7}" if "Additional description" in human_text(m) else next(turns))
    turns = itertools.cycle(asks)
    graph = build_rapid_graph(echo_captioner("dots"), reasoner, max_recaption_rounds=1, reasoner_samples=3)
    out = graph.invoke({"images": [circles_image], "question": "How many dots?"})
    assert (out["round"], out["answer"]) == ((1, "7") if recaptioned else (0, "5"))
    assert out["recaption_requests"] == (["count the dots"] if recaptioned else [])


# ------------------------------------------------------------------ captioner lists


def test_each_captioner_describes_concurrently_and_the_reasoner_reads_both_labelled(circles_image):
    first = echo_captioner("Three red circles.")
    second = echo_captioner("Two blue squares.")
    reasoner = replies("\\boxed{5}")
    out = build_rapid_graph([first, second], reasoner).invoke({"images": [circles_image], "question": "How many shapes?"})
    assert out["captions"] == ["Three red circles.", "Two blue squares."] and out["caption_rounds"] == [2]
    prompt = human_text(reasoner.calls[0])
    assert "Description 1 of 2: Three red circles." in prompt and "Description 2 of 2: Two blue squares." in prompt
    assert [u["node"] for u in out["usage"]] == ["caption", "caption", "reason"]


def test_captioner_calls_overlap_and_the_context_list_wins(circles_image):
    barrier = threading.Barrier(2, timeout=10)  # each call waits for the other: only concurrent calls pass

    def meeting(text: str) -> ScriptedChatModel:
        return ScriptedChatModel(respond=lambda m: (barrier.wait(), text)[1])

    built = echo_captioner("never used")
    out = build_rapid_graph(built, replies("\\boxed{1}")).invoke(
        {"images": [circles_image], "question": "q"}, context={"captioner": [meeting("a"), meeting("b")]}
    )
    assert out["captions"] == ["a", "b"] and built.calls == []


def test_captioner_list_settings(circles_image):
    reasoner = replies("\\boxed{1}")
    tentative = ScriptedChatModel(respond=lambda m: "Tentative: 1")
    out = build_rapid_graph([tentative, echo_captioner("x")], reasoner, prompt_preset="paper-eval").invoke(
        {"images": [circles_image], "question": "q"}
    )
    assert out["tentative_answer"] == "Tentative: 1"  # from the first captioner
    given = build_rapid_graph([echo_captioner("x"), echo_captioner("y")], reasoner).invoke(
        {"question": "q", "captions": ["one", "two"]}
    )
    assert given["caption_rounds"] == [2] and [u["node"] for u in given["usage"]] == ["reason"]
    assert "Description 2 of 2: two" in human_text(reasoner.calls[-1])
    with pytest.raises(ConfigError, match="listed twice"):
        build_rapid_graph(["tiny", "tiny"], reasoner)
    with pytest.raises(ConfigError, match="at least one captioner"):
        build_rapid_graph(reasoner=reasoner).invoke({"question": "q", "captions": ["c"]}, context={"captioner": []})


def test_a_captioner_list_is_cached_as_one_captioner(circles_image):
    first, second = echo_captioner("a"), echo_captioner("b")
    graph = build_rapid_graph([first, second], replies("\\boxed{1}"), caption_cache=":memory:")
    request = {"images": [circles_image], "question": "q"}
    assert graph.invoke(request)["perception_cached"] is False
    again = graph.invoke(request)
    assert again["perception_cached"] is True and again["captions"] == ["a", "b"] and again["caption_rounds"] == [2]
    assert len(first.calls) == len(second.calls) == 1
    # the list is the key: one of its captioners alone is another captioner configuration
    alone = graph.invoke(request, context={"captioner": first})
    assert alone["perception_cached"] is False and alone["captions"] == ["a"] and len(first.calls) == 2
