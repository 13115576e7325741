"""The eval harness's caption cache and request concurrency, measured side by side in one run.

(a) K=3 reasoners evaluated one after another (three runs, as when reasoners are added over time)
    on the bundled benchmark, with the SQLite caption cache vs without it: with it the captioner
    runs for the first run only. Prints the wall-time ratio without/with (target: >= 1.5).
(b) One reasoner behind a real local OpenAI-compatible server (`transformers serve
    --continuous-batching`, which batches concurrent requests as vLLM does), the same samples with
    `--concurrency 8` vs `--concurrency 1`, captions served from the cache. Prints the speedup
    (target: >= 2).

    python benchmarks/eval_cache.py [--samples 24] [--caption-tokens 64] [--reasoner-tokens 16]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from evals.config import BenchmarkRef, EvalConfig
from evals.runner import RunOptions, run_eval
from rapid_agent.models.spec import GenerationSettings
from rapid_agent.testing import ensure_tiny_models
from rapid_agent.testing.local_servers import LocalOpenAIServer


def timed_runs(configs: list[EvalConfig], folder: Path, cache: Path | None, concurrency: int) -> tuple[float, int]:
    """Wall time of running `configs` one after another, and the captioner calls they made."""
    started, calls = time.perf_counter(), 0
    for n, config in enumerate(configs):
        options = RunOptions(output_dir=folder / f"run{n}", cache_path=cache, concurrency=concurrency, show=0, progress=False)
        calls += run_eval(config, options).captioner_calls
    return time.perf_counter() - started, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--caption-tokens", type=int, default=64)
    parser.add_argument("--reasoner-tokens", type=int, default=16)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="eval-cache-bench-"))
    try:
        _, reasoner = ensure_tiny_models()
        copies = []
        for n in range(3):  # three distinct reasoner specs (same tiny weights)
            copies.append(work / f"reasoner{n}")
            shutil.copytree(reasoner, copies[-1])
        base = EvalConfig(
            captioner="tiny", benchmarks=(BenchmarkRef.parse("bundled"),), limit=args.samples, prompt_preset="paper-train",
            captioner_generation=GenerationSettings(max_new_tokens=args.caption_tokens),
            reasoner_generation=GenerationSettings(max_new_tokens=args.reasoner_tokens),
        )
        configs = [base.model_copy(update={"reasoners": (f"hf:{path}",)}) for path in copies]
        timed_runs(configs[:1], work / "warmup", None, 8)  # load weights and code paths once, for both arms
        cached, cached_calls = timed_runs(configs, work / "cached", work / "cache.sqlite", 8)
        uncached, uncached_calls = timed_runs(configs, work / "uncached", None, 8)
        print(f"(a) K=3 reasoners one after another, {args.samples} samples, tiny local models:")
        print(f"    with the caption cache   {cached:6.1f} s  ({cached_calls} captioner calls)")
        print(f"    without it               {uncached:6.1f} s  ({uncached_calls} captioner calls)")
        print(f"    ratio without/with: {uncached / cached:.2f}x (target >= 1.5)")

        with LocalOpenAIServer(reasoner, extra_args=["--continuous-batching"]) as server:
            served = [base.model_copy(update={"reasoners": (server.spec,)})]
            timed_runs(served, work / "prime", work / "cache.sqlite", 8)  # captions cached, server warm
            sequential, _ = timed_runs(served, work / "sequential", work / "cache.sqlite", 1)
            concurrent, _ = timed_runs(served, work / "concurrent", work / "cache.sqlite", 8)
        print(f"(b) reasoner behind `transformers serve --continuous-batching`, {args.samples} samples:")
        print(f"    --concurrency 1  {sequential:6.1f} s")
        print(f"    --concurrency 8  {concurrent:6.1f} s")
        print(f"    speedup: {sequential / concurrent:.2f}x (target >= 2)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
