"""The VPO reward: the RAPID graph fed policy captions, graded, concurrent, robust, logged."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from rapid_agent import build_rapid_graph
from rapid_agent.graph import DEFAULT_RETRY
from rapid_agent.models.spec import ModelResolver
from rapid_agent.testing import ScriptedChatModel, fact_reasoner
from rapid_agent.testing.reward_logs import RewardLogs
from training.config import VPOConfig
from training.reward import GraphReward, PoolReasoner, caption_length, zero_variance_fraction

FAST_RETRY = DEFAULT_RETRY._replace(initial_interval=0.01, jitter=False)  # same retry rule, short waits



def _call(reward, captions, gold, *, question="How many circles?", options=None, logs=None, row_ids=None):
    n = len(captions)
    logs = logs or RewardLogs()
    return asyncio.run(
        reward(
            prompts=[[{"role": "user", "content": "..."}]] * n,
            completions=[[{"role": "assistant", "content": c}] for c in captions],
            completion_ids=[list(range(len(c.split()))) for c in captions],
            question=[question] * n,
            answer=[gold] * n,
            options=[options or []] * n,
            answer_type=["auto"] * n,
            row_id=row_ids or ["r0"] * n,
            log_metric=logs.metric,
            log_extra=logs.column,
            trainer_state=None,
        )
    )


def test_reward_is_whether_the_reasoner_reading_the_caption_answers_right():
    reasoner = fact_reasoner({"three red circles": "3", "two red circles": "2"})
    reward = GraphReward(build_rapid_graph(reasoner=reasoner))
    captions = ["There are three red circles.", "I see two red circles.", "A white picture.", "THREE RED CIRCLES"]
    logs = RewardLogs()
    rewards = _call(reward, captions, "3", logs=logs, row_ids=["a", "a", "b", "b"])
    assert rewards == [1.0, 0.0, 0.0, 1.0]
    assert len(reasoner.calls) == 4
    prompt = reasoner.calls[0][-1].text  # the paper's training reasoner prompt around the policy's caption
    assert prompt.startswith("### The detailed caption of the provided image: There are three red circles.")
    assert "### Question: How many circles?" in prompt
    assert logs.extra["reasoner_answer"] == ["3", "2", "None", "3"] and logs.extra["gold"] == ["3"] * 4
    assert logs.metrics["vpo/reward_mean"] == [0.5] and logs.metrics["vpo/reasoner_accuracy"] == [0.5]
    assert logs.metrics["vpo/reward_std"] == [0.5] and logs.metrics["vpo/reasoner_errors"] == [0.0]
    assert logs.metrics["vpo/frac_zero_std_groups"] == [0.0] and logs.metrics["vpo/caption_length"] == [4.0]
    assert logs.metrics["vpo/reasoner_latency_s"][0] >= 0


def test_multiple_choice_is_graded_with_the_options():
    reasoner = fact_reasoner({"a dog": "dog", "a cat": "A"})
    reward = GraphReward(build_rapid_graph(reasoner=reasoner))
    rewards = _call(reward, ["It shows a dog.", "It shows a cat."], "B", question="Which animal?", options=["cat", "dog"])
    assert rewards == [1.0, 0.0]  # "dog" is option B's text; "A" is the wrong letter
    assert "Options:\nA. cat\nB. dog" in reasoner.calls[0][-1].text


def test_k_reasoner_samples_are_averaged():
    answers = itertools.cycle(["\\boxed{3}", "\\boxed{4}"])
    reasoner = ScriptedChatModel(respond=lambda messages: next(answers))
    reward = GraphReward(build_rapid_graph(reasoner=reasoner), samples=4)
    logs = RewardLogs()
    assert _call(reward, ["caption one", "caption two"], "3", logs=logs) == [0.5, 0.5]
    assert len(reasoner.calls) == 8
    assert logs.metrics["vpo/frac_zero_std_groups"] == [1.0]


def test_the_batch_runs_concurrently():
    group = 8
    # each call is held until all 8 are in flight at once: a sequential reward would time out here
    reasoner = ScriptedChatModel(respond=lambda messages: "\\boxed{3}", wait_for_in_flight=group)
    reward = GraphReward(build_rapid_graph(reasoner=reasoner), concurrency=group)
    rewards = _call(reward, [f"caption {i}" for i in range(group)], "3")
    assert rewards == [1.0] * group and len(reasoner.calls) == group
    assert reasoner.max_in_flight == group


def test_concurrency_limit_is_respected():
    reasoner = ScriptedChatModel(respond=lambda messages: "\\boxed{3}", latency_s=0.05, wait_for_in_flight=2)
    reward = GraphReward(build_rapid_graph(reasoner=reasoner), concurrency=2)
    assert _call(reward, [f"caption {i}" for i in range(6)], "3") == [1.0] * 6
    assert reasoner.max_in_flight == 2  # reached (the gate opened), never exceeded


def test_transient_errors_are_retried_by_the_graph():
    reasoner = ScriptedChatModel(respond=lambda messages: "\\boxed{3}", fail_times=2, error=ConnectionError)
    reward = GraphReward(build_rapid_graph(reasoner=reasoner, retry_policy=FAST_RETRY))
    logs = RewardLogs()
    assert _call(reward, ["a", "b"], "3", logs=logs) == [1.0, 1.0]
    assert len(reasoner.calls) == 4 and logs.metrics["vpo/reasoner_errors"] == [0.0]


@pytest.mark.parametrize("failed_reward", [None, 0.0])
def test_errors_and_timeouts_after_retries_give_no_reward_and_are_counted(failed_reward, caplog):
    broken = ScriptedChatModel(respond=lambda messages: "\\boxed{3}", fail_times=10**6, error=ConnectionError)
    hung = ScriptedChatModel(respond=lambda messages: "\\boxed{3}", latency_s=3600.0)  # only the time-out ends it
    for reasoner, timeout in ((broken, None), (hung, 0.2)):
        graph = build_rapid_graph(reasoner=reasoner, call_timeout_s=timeout, retry_policy=FAST_RETRY)
        reward = GraphReward(graph, samples=2, failed_reward=failed_reward)
        logs = RewardLogs()
        assert _call(reward, ["a", "b"], "3", logs=logs) == [failed_reward, failed_reward]
        assert logs.metrics["vpo/reasoner_errors"] == [4.0] and logs.extra["reasoner_answer"][0].startswith("<error")
        assert len(reasoner.calls) == 12  # 4 samples x 3 attempts (the graph's retry policy)
    assert "4 of 4 reasoner calls failed" in caplog.text


def test_partial_failures_average_over_the_answered_samples():
    reasoner = ScriptedChatModel(respond=lambda messages: "\\boxed{3}", fail_times=3, error=ValueError)  # not retried
    reward = GraphReward(build_rapid_graph(reasoner=reasoner), samples=4, concurrency=1)
    logs = RewardLogs()
    assert _call(reward, ["a"], "3", logs=logs) == [1.0]
    assert logs.metrics["vpo/reasoner_errors"] == [3.0]


def test_length_term_and_zero_variance_groups():
    assert caption_length([], completion_ids=[[1] * 4, [1] * 16], max_tokens=16) == [-0.25, -1.0]
    assert zero_variance_fraction([1.0, 1.0, 0.0, 1.0, None, None], ["a", "a", "b", "b", "c", "c"]) == pytest.approx(2 / 3)


@pytest.mark.slow  # starts `transformers serve`
def test_served_reasoner_works_on_a_fresh_event_loop(reasoner_server):
    """TRL runs the reward on its own loop; an earlier loop's closed connections must not break it."""
    settings = VPOConfig(reasoner_max_new_tokens=4, reasoner_temperature=0.0).reasoner_generation()
    earlier = ModelResolver(generation={"reasoner": settings}).resolve(reasoner_server.spec, "reasoner")
    asyncio.run(earlier.ainvoke("hello"))  # this loop closes, leaving its pooled connections behind
    reasoner = ModelResolver(generation={"reasoner": settings}).resolve(reasoner_server.spec, "reasoner")
    logs = RewardLogs()
    rewards = _call(GraphReward(build_rapid_graph(reasoner=reasoner)), ["a", "b", "c"], "3", logs=logs)
    assert logs.metrics["vpo/reasoner_errors"] == [0.0] and all(r is not None for r in rewards)


def _pool_graph_and_members():
    """Two reasoners that know different facts: `small` reads counts, `large` also reads colours."""
    small = fact_reasoner({"three red circles": "3"})
    large = fact_reasoner({"three red circles": "3", "3 circles": "3"})
    graph = build_rapid_graph(reasoner=small)
    return graph, small, large


def test_a_pool_scores_every_caption_with_every_reasoner_weighted():
    graph, small, large = _pool_graph_and_members()
    pool = [PoolReasoner("small", small, weight=3.0), PoolReasoner("large", large, weight=1.0)]
    reward = GraphReward(graph, pool=pool, samples=2)
    logs = RewardLogs()
    rewards = _call(reward, ["three red circles", "3 circles", "nothing"], "3", logs=logs, row_ids=["a", "a", "a"])
    assert rewards == [1.0, 0.25, 0.0]  # (3 x 1 + 1 x 1) / 4, (3 x 0 + 1 x 1) / 4, nobody
    assert len(small.calls) == len(large.calls) == 3 * 2  # every caption, every reasoner, k samples
    assert logs.metrics["vpo/reasoner_accuracy/small"] == [pytest.approx(1 / 3)]
    assert logs.metrics["vpo/reasoner_accuracy/large"] == [pytest.approx(2 / 3)]
    assert logs.metrics["vpo/reward_mean"] == [pytest.approx(1.25 / 3)]


class _State:
    def __init__(self, step):
        self.global_step = step


def test_a_sampled_pool_reads_each_group_with_one_reasoner_drawn_the_same_on_every_process():
    graph, small, large = _pool_graph_and_members()
    pool = [PoolReasoner("small", small), PoolReasoner("large", large)]
    reward = GraphReward(graph, pool=pool, pool_mode="sample", seed=3)
    groups = [f"q{i}" for i in range(40) for _ in range(4)]
    readers = reward.readers(groups, step=5)
    by_group = {g: {tuple(r) for gg, r in zip(groups, readers, strict=True) if gg == g} for g in set(groups)}
    assert all(len(chosen) == 1 and len(next(iter(chosen))) == 1 for chosen in by_group.values())
    assert {next(iter(c))[0] for c in by_group.values()} == {0, 1}  # both reasoners are drawn over 40 groups
    # another process (a fresh reward object, same seed) holding half of a group draws the same reasoner for it
    other = GraphReward(graph, pool=pool, pool_mode="sample", seed=3)
    assert other.readers(groups[2:6], step=5) == readers[2:6]
    assert reward.readers(groups, step=6) != readers  # a new draw each step
    logs = RewardLogs()
    rewards = asyncio.run(reward(
        prompts=[[]] * 4, completions=["3 circles"] * 4, question=["How many?"] * 4, answer=["3"] * 4,
        row_id=["q0"] * 4, trainer_state=_State(5), log_metric=logs.metric,
    ))
    drawn = pool[readers[0][0]].name
    assert rewards == [1.0 if drawn == "large" else 0.0] * 4 and len(small.calls) + len(large.calls) == 4
    assert list(k for k in logs.metrics if k.startswith("vpo/reasoner_accuracy/")) == [f"vpo/reasoner_accuracy/{drawn}"]
    zero = GraphReward(graph, pool=[PoolReasoner("small", small, 0.0), PoolReasoner("large", large, 1.0)], pool_mode="sample")
    assert {r[0] for r in zero.readers(groups, step=1)} == {1}  # a zero weight is never drawn


@pytest.mark.parametrize(
    ("pool", "mode"),
    [
        ([PoolReasoner("a", None), PoolReasoner("a", None)], "all"),
        ([PoolReasoner("a", None, -1.0)], "all"),
        ([PoolReasoner("a", None, 0.0)], "all"),
        ([PoolReasoner("a", None)], "each"),
    ],
)
def test_a_malformed_pool_is_refused(pool, mode):
    with pytest.raises(ValueError, match="pool"):
        GraphReward(build_rapid_graph(reasoner=fact_reasoner({})), pool=pool, pool_mode=mode)
