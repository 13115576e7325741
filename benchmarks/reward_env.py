"""The VPO reward environment vs one direct concurrent call of the same reasoner, side by side.

For one training step of B×G captions, time (a) `GraphReward` (the RAPID graph with the captions
given, grading included) and (b) the same reasoner prompts sent straight to the same chat model with
`abatch` at the same concurrency. Both at temperature 0, so both generate the same tokens. Printed:
the ratio (a)/(b) for a reasoner behind a real local OpenAI-compatible server (`transformers
serve`) and for the local HF reasoner (micro-batched). Target: <= 1.2 for both.

    python benchmarks/reward_env.py [--batch 8] [--group 4] [--max-new-tokens 64] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from langchain_core.messages import HumanMessage, SystemMessage

from rapid_agent import build_rapid_graph
from rapid_agent.models.spec import ModelResolver
from rapid_agent.prompts import format_question, get_preset
from rapid_agent.testing import ensure_tiny_models
from rapid_agent.testing.local_servers import LocalOpenAIServer
from training.config import VPOConfig
from training.data import demo_rows
from training.reward import GraphReward


def step_batch(batch: int, group: int) -> dict[str, list]:
    """A step's reward-function arguments: B demo questions, G distinct captions each."""
    rows = demo_rows(batch)
    items = [(row, f"Caption {g} of item {i}: {row['question']} drawn in colour.") for i, row in enumerate(rows)
             for g in range(group)]
    return {
        "prompts": [[{"role": "user", "content": "..."}]] * len(items),
        "completions": [[{"role": "assistant", "content": caption}] for _, caption in items],
        "question": [row["question"] for row, _ in items],
        "options": [row["options"] or [] for row, _ in items],
        "answer": [row["answer"] for row, _ in items],
        "row_id": [row["id"] for row, _ in items],
    }


def direct_messages(step: dict[str, list]) -> list[list]:
    """The reasoner messages the graph builds, written by hand."""
    preset = get_preset("paper-train")
    return [
        [
            SystemMessage(preset.reasoner_system),
            HumanMessage(preset.reasoner_user.format(
                caption=completion[0]["content"], question=format_question(question, options or None), tentative=""
            )),
        ]
        for completion, question, options in zip(step["completions"], step["question"], step["options"], strict=True)
    ]


async def compare(reasoner, step: dict[str, list], concurrency: int, repeats: int) -> tuple[float, float]:
    reward = GraphReward(build_rapid_graph(reasoner=reasoner), concurrency=concurrency)
    messages = direct_messages(step)
    await reward(**step)  # warm-up: load weights, open connections
    await reasoner.abatch(messages[:2])
    t_env, t_direct = [], []
    for _ in range(repeats):  # interleaved, so drift hits both alike
        start = time.perf_counter()
        await reasoner.abatch(messages, config={"max_concurrency": concurrency})
        t_direct.append(time.perf_counter() - start)
        start = time.perf_counter()
        await reward(**step)
        t_env.append(time.perf_counter() - start)
    return statistics.median(t_env), statistics.median(t_direct)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8, help="questions per step (B)")
    parser.add_argument("--group", type=int, default=4, help="captions per question (G)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    _, reasoner_path = ensure_tiny_models()
    settings = VPOConfig(  # the reasoner settings training uses, at temperature 0
        reasoner_temperature=0.0, reasoner_max_new_tokens=args.max_new_tokens, reasoner_concurrency=args.concurrency
    ).reasoner_generation()
    step = step_batch(args.batch, args.group)
    n = args.batch * args.group
    with LocalOpenAIServer(reasoner_path) as server:
        served = ModelResolver(generation={"reasoner": settings}).resolve(server.spec, "reasoner")
        t_env, t_direct = asyncio.run(compare(served, step, args.concurrency, args.repeats))
        print(f"served reasoner ({server.base_url}), {n} captions: reward env {t_env:.3f}s, direct {t_direct:.3f}s, "
              f"ratio {t_env / t_direct:.2f} (target <= 1.2)")
    local = ModelResolver(generation={"reasoner": settings}).resolve(f"hf:{reasoner_path}", "reasoner")
    t_env, t_direct = asyncio.run(compare(local, step, args.concurrency, args.repeats))
    print(f"local HF reasoner, {n} captions: reward env {t_env:.3f}s, direct {t_direct:.3f}s, "
          f"ratio {t_env / t_direct:.2f} (target <= 1.2); {local.generate_calls} batched generate calls in "
          f"{2 * args.repeats + 2} rounds")


if __name__ == "__main__":
    main()
