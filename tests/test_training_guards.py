"""Reward-hacking guards: captions that state the answer are caught, descriptions are not."""

from __future__ import annotations

import asyncio
import inspect
import random

import pytest

from rapid_agent.miniworld import world
from rapid_agent.testing import ScriptedChatModel
from rapid_agent.testing.reward_logs import RewardLogs
from training.guards import DescribeCheck, LeakPenalty, find_leak, parse_yes_no

BARS = ["bar A", "bar B", "bar C", "bar D"]

LEAKS = [  # (caption, options, the leaked answer find_leak returns)
    ("\\boxed{12}", None, "12"),
    ("\\boxed{B}", BARS, "B"),
    ("The chart has three bars, so the sum is \\boxed{\\frac{1}{2}}", None, "\\frac{1}{2}"),
    ("bar A: 7 \\boxed{\\text{(C)}}", BARS, "C"),
    ("\\boxed{{1, 2}}", None, "{1, 2}"),
    ("bar A: 7; bar B: 15 <answer>22</answer>", None, "22"),
    ("The image shows three red circles. The answer is 3.", None, "3"),
    ("Answer: C", BARS, "C"),
    ("**Final Answer:** 42", None, "42"),
    ("Three bars are drawn.\nFinal answer:\n\n36", None, "36"),
    ("So the correct option is B.", BARS, "B"),
    ("Therefore, the sum of the bars is 36.", None, "36"),
    ("Thus x = 5.", None, "5"),
    ("The bars read 7 and 15. Hence, 7 + 15 = 22.", None, "22"),
    ("Option C is correct.", BARS, "C"),
    ("(B) is the correct answer.", BARS, "B"),
    ("option d is the correct answer", BARS, "D"),
    ("12 is the answer.", None, "12"),
    ("The bars are A: 7, B: 15.\n(B)", BARS, "B"),
    ("B", BARS, "B"),
    ("(C).", None, "C"),
    ("26", None, "26"),
    ("bar B", BARS, "bar B"),
    ("The answer is yes.", None, "yes"),
    ("There are three bars. The answer is 3 because there are three.", None, "3"),
    ("the correct answer is (B) 8/11", ["1/2", "8/11"], "B"),
    ("Therefore, the tallest bar is bar B.", BARS, "bar B"),
    ("What is the answer? The answer is 12.", None, "12"),
    ("The final answer is $\\frac{3}{4}$.", None, "\\frac{3}{4}"),
    ("Consequently the value of x equals 4.", None, "4"),
    ("The right answer would be D.", BARS, "D"),
    ("In conclusion, the area is 12 cm².", None, "12 cm²"),
    ("The answer is A and C.", BARS, "A and C"),
    ("The image shows a triangle.\nThe answer is 30°.", None, "30°"),
]

DESCRIPTIONS = [  # (caption, options): descriptions, restated questions, option lists
    ("The image shows options A and B.", BARS),
    ("bar C has value 7", None),
    ("Question asks which bar is tallest", BARS),
    ("The chart's title reads 'Answer sheet'", None),
    ("Option A shows a red circle", BARS),
    ("bar A: 7; bar B: 15; bar C: 4", BARS),
    ("Values: 3, 5, 8, 13.", None),
    ("A: 3, B: 5", BARS),
    ("Choose the correct answer: A, B, C or D.", BARS),
    ("The student must select the right answer from A, B, C, D.", BARS),
    ("The answer is not shown in the image.", None),
    ("The correct answer is unclear from the image.", None),
    ("The answer choices are A) red and B) blue.", ["red", "blue"]),
    ("The value of bar C is 7.", None),
    ("The total of the first column is 26.", None),
    ("There are three red circles.", None),
    ("The answer box is empty.", None),
    ("Answer: ____", None),
    ("Answer: The image shows a cat on a mat.", None),
    ("The answer should be written in centimeters.", None),
    ("The worksheet asks the student to write the answer in the box.", None),
    ("The labels are:\nA\nB\nC\nD", BARS),
    ("A triangle ABC with AB = 5 and BC = 12.", None),
    ("The figure shows x = 5 and y = 3.", None),
    ("The equation 2 + 3 = 5 is written on the board.", None),
    ("B is the option with the red square.", BARS),
    ("So-called golden ratio rectangle, sides 1 and 1.618.", None),
    ("A red circle.", None),
    ("", None),
]


@pytest.mark.parametrize(("caption", "options", "leaked"), LEAKS)
def test_a_caption_stating_the_answer_is_caught(caption, options, leaked):
    assert find_leak(caption, options) == leaked


@pytest.mark.parametrize(("caption", "options"), DESCRIPTIONS)
def test_a_caption_that_describes_is_not_caught(caption, options):
    assert find_leak(caption, options) is None


def test_a_lone_letter_line_counts_only_for_an_option():
    assert find_leak("Bars of 7 and 15.\nC", ["x", "y", "z"]) == "C"
    assert find_leak("Bars of 7 and 15.\nE", ["x", "y", "z"]) is None  # no option E
    assert find_leak("Bars of 7 and 15.\nC", None) is None  # a label, no options to answer


def _captioner_rows(seed: int, count: int, *, direct_fraction: float, full_probability: float):
    """The miniworld SFT captioner's targets (`training.miniworld.sft.captioner_dataset`'s mix,
    without the images): (target, options, the direct answer or None)."""
    rng = random.Random(f"captioner-{seed}")
    for task in world.tasks("train", count, seed=seed):
        options = list(task.options) if task.options else None
        if rng.random() < direct_fraction:
            yield world.direct_answer(task), options, task.letter or task.answer
        else:
            yield world.partial_description(task.scene, rng, full_probability=full_probability), options, None


def test_miniworld_direct_answers_are_caught_and_descriptions_are_not():
    rows = [
        row
        for seed in range(30)
        for row in _captioner_rows(seed, 20, direct_fraction=0.3, full_probability=0.2 + seed / 60)
    ]
    assert {direct is None for _, _, direct in rows} == {True, False}
    for target, options, direct in rows:
        assert find_leak(target, options) == direct, target
    for task in world.tasks("test", 200, seed=1):  # full descriptions of held-out scenes too
        assert find_leak(world.describe(task.scene), list(task.options or [])) is None


def test_miniworld_reasoner_work_is_caught():
    for task in world.tasks("train", 50, seed=3):
        work = world.reasoner_work(task, sum_style="partial")
        assert find_leak(work, list(task.options or [])) == (task.letter or task.answer), work



def test_leak_penalty_on_strings_and_messages_with_options():
    penalty = LeakPenalty()
    assert penalty.__name__ == "leak_penalty" and not inspect.iscoroutinefunction(type(penalty).__call__)
    captions = ["bar A: 7; bar B: 15", "\\boxed{15}", "bar A: 7\nB", "bar A: 7\nB"]
    logs = RewardLogs()
    rewards = penalty(
        prompts=[[{"role": "user", "content": "..."}]] * 4,
        completions=[[{"role": "assistant", "content": c}] for c in captions],
        options=[["bar A", "bar B"], [], ["bar A", "bar B"], []],  # [] : no options, "B" is a label
        log_metric=logs.metric,
        log_extra=logs.column,
        trainer_state=None,
    )
    assert rewards == [0.0, -1.0, -1.0, 0.0]
    assert logs.metrics["vpo/leak_rate"] == [0.5]
    assert logs.extra["leak"] == ["", "15", "B", ""]

    plain = LeakPenalty(penalty=0.25)(prompts=["q", "q"], completions=["Answer: 7", "bar A: 7"])
    assert plain == [-0.25, 0.0]  # plain-text completions, no options column, no loggers


def test_leak_penalty_rejects_a_negative_penalty():
    with pytest.raises(ValueError):
        LeakPenalty(penalty=-1.0)


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("Yes", True),
        ("yes.", True),
        ("**No**", False),
        ("No, it states the answer 'yes'.", False),
        ("<think>It gives 12 away.</think>\nNo", False),
        ("Verdict: \\boxed{yes}", True),
        ("The caption only describes the image, so: yes", True),
        ("It is purely descriptive.", None),
        ("yes or no? Hard to say.", None),
        ("<think>unfinished", None),
        ("", None),
    ],
)
def test_judge_replies_are_parsed(reply, verdict):
    assert parse_yes_no(reply) is verdict


def _judge(**kwargs) -> ScriptedChatModel:
    def respond(messages):
        caption = messages[-1].text.split("Caption:\n", 1)[1]
        if caption.startswith("RAISE"):
            raise ConnectionError("judge down")
        if caption.startswith("GARBAGE"):
            return "I am not sure what you mean."
        return "<think>It gives the sum away.</think>No." if "sum is" in caption else "Yes"

    return ScriptedChatModel(respond=respond, **kwargs)


def _check(check, captions, *, options=None, logs=None):
    n = len(captions)
    logs = logs or RewardLogs()
    return asyncio.run(
        check(
            prompts=[[{"role": "user", "content": "..."}]] * n,
            completions=[[{"role": "assistant", "content": c}] for c in captions],
            question=["What is the sum of the values of all bars?"] * n,
            options=options if options is not None else [[]] * n,
            log_metric=logs.metric,
            log_extra=logs.column,
            trainer_state=None,
        )
    )


def test_describe_check_penalises_what_the_judge_calls_solving_and_survives_the_judge():
    judge = _judge()
    check = DescribeCheck(judge)
    assert check.__name__ == "describe_check" and inspect.iscoroutinefunction(
        type(check).__call__
    )  # TRL awaits it
    logs = RewardLogs()
    captions = ["bar A: 7; bar B: 15", "bar A: 7; bar B: 15; the sum is 22", "GARBAGE", "RAISE"]
    rewards = _check(check, captions, options=[["x", "y"], [], None, []], logs=logs)
    assert rewards == [0.0, -1.0, 0.0, 0.0]  # unparseable and failed judge calls score 0.0
    assert logs.metrics["vpo/not_describing_rate"] == [0.25]
    assert logs.metrics["vpo/describe_check_unparsed"] == [1.0]
    assert logs.metrics["vpo/describe_check_errors"] == [1.0]
    assert logs.extra["describes"] == ["yes", "no", "unparsed", "error"]
    system, user = judge.calls[0]
    assert "only describe the image" in system.text
    assert "What is the sum of the values of all bars?\nOptions:\nA. x\nB. y" in user.text
    assert "Caption:\nbar A: 7; bar B: 15" in user.text and user.text.rstrip().endswith("Reply yes or no.")


def test_describe_check_bounds_its_concurrency():
    judge = _judge(latency_s=0.02)
    rewards = _check(DescribeCheck(judge, concurrency=2, penalty=0.5), ["the sum is 9"] * 6)
    assert rewards == [-0.5] * 6
    assert judge.max_in_flight == 2


class _BrokenJudge:
    async def abatch(self, *args, **kwargs):
        raise RuntimeError("the batch call itself failed")


def test_describe_check_survives_a_failed_batch():
    logs = RewardLogs()
    assert _check(DescribeCheck(_BrokenJudge()), ["a", "b"], logs=logs) == [0.0, 0.0]
    assert logs.metrics["vpo/describe_check_errors"] == [2.0] and logs.extra["describes"] == [
        "error",
        "error",
    ]


def test_describe_check_resolves_a_spec_as_a_text_model():
    resolved = []

    class Resolver:
        def resolve(self, spec, role):
            resolved.append((spec, role))
            return _judge()

    check = DescribeCheck("openai:judge@http://127.0.0.1:1/v1", resolver=Resolver())
    assert resolved == [("openai:judge@http://127.0.0.1:1/v1", "reasoner")]
    assert _check(check, ["bar A: 7"]) == [0.0]
