"""Graph overhead and micro-batching throughput, measured side by side in one run.

(a) 32 concurrent requests through the RAPID graph vs calling the same two fixed-latency models
    directly (caption, then reason) with the same concurrency. Target: ratio <= 1.05.
(b) The same with k = 5 votes: the graph (`reasoner_samples=5`) vs the caption, then 5 concurrent
    reasoner calls, written by hand. Target: ratio <= 1.05.
(c) 16 concurrent caption requests to the tiny local captioner, micro-batched vs one by one.
    Target: throughput ratio >= 4.

    python benchmarks/graph_overhead.py [--requests 32] [--latency 0.5] [--rounds 3]

(a) and (b) alternate direct and graph runs `--rounds` times and compare the medians. After set-up,
the heap that imports and models left (torch, transformers: millions of objects) is frozen out of
the garbage collector (`gc.freeze`), as a server does after start-up: otherwise one full collection
of it (about 0.2 s here) lands in whichever side happens to trigger it. Both sides run under the same
collector settings; `--no-freeze` measures without it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from langchain_core.messages import HumanMessage, SystemMessage
from PIL import Image

from rapid_agent import ImagePolicy, build_rapid_graph, load_images
from rapid_agent.images import to_data_url
from rapid_agent.models.hf import HFVisionChatModel
from rapid_agent.prompts import get_preset
from rapid_agent.testing import echo_captioner, ensure_tiny_models, fact_reasoner

# small images, not upscaled: the comparison measures the graph, not PNG encoding
NO_RESIZE = ImagePolicy(resize_min_pixels=1)


def images(n: int) -> list[Image.Image]:
    return [Image.new("RGB", (64 + i, 64), (i * 7 % 256, 90, 160)) for i in range(n)]


async def direct(captioner, reasoner, requests: list[dict], samples: int = 1) -> None:
    """The calls the graph makes, written by hand with no graph around them: the caption, then
    `samples` concurrent reasoner calls."""
    preset = get_preset("paper-train")

    async def one(request: dict) -> None:
        loaded = load_images(request["images"], NO_RESIZE)  # the same checks as the graph
        parts = [{"type": "image_url", "image_url": {"url": to_data_url(img)}} for img in loaded]
        parts.append({"type": "text", "text": preset.caption_user.format(question=request["question"])})
        caption = await captioner.ainvoke([SystemMessage(preset.caption_system), HumanMessage(parts)])
        user = preset.reasoner_user.format(caption=caption.text, question=request["question"])
        messages = [SystemMessage(preset.reasoner_system), HumanMessage(user)]
        await asyncio.gather(*(reasoner.ainvoke(messages) for _ in range(samples)))

    await asyncio.gather(*(one(r) for r in requests))


def graph_overhead(label: str, n: int, latency: float, samples: int, rounds: int) -> float:
    """Median wall time of the graph over that of the same calls by hand, alternating `rounds` times."""
    captioner = echo_captioner("three red circles", latency_s=latency)
    reasoner = fact_reasoner({"three red circles": "3"}, latency_s=latency)
    graph = build_rapid_graph(captioner, reasoner, image_policy=NO_RESIZE, reasoner_samples=samples)
    requests = [{"images": [img], "question": f"How many circles? ({i})"} for i, img in enumerate(images(n))]
    asyncio.run(graph.abatch(requests[:2]))  # warm-up
    asyncio.run(direct(captioner, reasoner, requests[:2], samples))

    def timed(run) -> float:
        start = time.perf_counter()
        asyncio.run(run())
        return time.perf_counter() - start

    t_direct, t_graph = [], []
    for _ in range(rounds):
        t_direct.append(timed(lambda: direct(captioner, reasoner, requests, samples)))
        t_graph.append(timed(lambda: graph.abatch(requests, config={"max_concurrency": n})))
    results = asyncio.run(graph.abatch(requests[:4]))
    assert all(r["answer"] == "3" for r in results)
    d, g = statistics.median(t_direct), statistics.median(t_graph)
    print(f"{label} {n} requests, {samples} reasoner call(s) each, {latency:.2f}s per model call, median of {rounds}: "
          f"direct {d:.3f}s, graph {g:.3f}s  (rounds: direct {' '.join(f'{t:.3f}' for t in t_direct)}; "
          f"graph {' '.join(f'{t:.3f}' for t in t_graph)})")
    return g / d


def batching_speedup(n: int, captioner_path: str) -> float:
    def run(max_batch_size: int) -> float:
        model = HFVisionChatModel(model_path=captioner_path, max_new_tokens=32, max_batch_size=max_batch_size, max_wait_s=0.05)
        model.load()
        messages = [
            [HumanMessage([{"type": "image_url", "image_url": {"url": to_data_url(img)}}, {"type": "text", "text": f"Describe {i}"}])]
            for i, img in enumerate(images(n))
        ]
        model.invoke(messages[0])  # warm-up
        start = time.perf_counter()
        with ThreadPoolExecutor(n) as pool:
            list(pool.map(model.invoke, messages))
        return time.perf_counter() - start

    t_single, t_batched = run(1), run(n)
    print(f"(c) {n} concurrent captions on the tiny captioner: one by one {t_single:.3f}s, micro-batched {t_batched:.3f}s")
    return t_single / t_batched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.5, help="fixed latency of each scripted model call (s)")
    parser.add_argument("--batch-requests", type=int, default=16)
    parser.add_argument("--samples", type=int, default=5, help="reasoner samples (votes) of (b)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating direct/graph runs of (a) and (b)")
    parser.add_argument("--no-freeze", action="store_true", help="leave the set-up heap to the garbage collector")
    args = parser.parse_args()

    if not args.no_freeze:
        gc.collect()
        gc.freeze()
    ratio = graph_overhead("(a)", args.requests, args.latency, 1, args.rounds)
    print(f"graph / direct wall-time ratio: {ratio:.3f}  (target <= 1.05)")
    ratio = graph_overhead("(b)", args.requests, args.latency, args.samples, args.rounds)
    print(f"graph / direct wall-time ratio with {args.samples} votes: {ratio:.3f}  (target <= 1.05)")
    with tempfile.TemporaryDirectory() as root:
        captioner_path, _ = ensure_tiny_models(root)
        speedup = batching_speedup(args.batch_requests, str(captioner_path))
    print(f"micro-batched / one-by-one throughput ratio: {speedup:.2f}  (target >= 4)")


if __name__ == "__main__":
    main()
