"""Load and fault test of the served RAPID graph (`langgraph dev` + graphs/langgraph.json), in one run.

Captioner and reasoner are scripted chat models behind real OpenAI-compatible HTTP servers, with a
fixed latency per call; each run asks about item N and the right answer is N, so lost, duplicated or
mixed-up runs show. Printed:

  * completed/sent for RUNS runs from CLIENTS concurrent SDK clients (must be RUNS/RUNS, all correct,
    each item reasoned about exactly once);
  * p50 and p99 latency under load as ratios to a single unloaded run;
  * throughput served vs the same graph called in-process with the same concurrency, side by side in
    this run (P5, target >= 0.9), and where a served run's time goes, from the server's own log: the
    wait in its run queue, the graph's execution, and the rest (HTTP, auth, the client);
  * the same load on a server with `langgraph dev`'s default of one run at a time (no
    `--n-jobs-per-worker`), for `--one-job-runs` runs;
  * the same load with the reasoner endpoint failing FAILURE_RATE of its calls (HTTP 500s and hangs
    cut by the per-call time-out): every run must end with an answer or a recorded error, none may
    hang, and the server must still answer afterwards.

    python benchmarks/serve_load.py [--runs 200] [--clients 20] [--latency-s 1.0] [--failure-rate 0.2]

Exit status 1 when a correctness condition fails (not for the throughput target).

The throughput ratio depends on the model time per run: `langgraph dev`'s in-memory queue looks for
new runs every 0.5 s and takes only runs created before its last sleep began, so each run waits about
0.9 s before it starts, whatever the load; no setting of the server changes that (docs/serving.md,
"Throughput"). The ratio is about T / (T + 0.9 s) for T seconds of model time per run: the default
1 s per call (two calls a run) gives T = 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from langchain_core.messages import BaseMessage
from langgraph_sdk import get_client
from PIL import Image

from rapid_agent.serving.client import raise_for_run_error
from rapid_agent.serving.graphs import graph_from_settings
from rapid_agent.serving.settings import ServeSettings
from rapid_agent.testing import ScriptedChatModel
from rapid_agent.testing.langgraph_server import LangGraphDevServer
from rapid_agent.testing.openai_server import ScriptedOpenAIServer

CONFIG = Path(__file__).resolve().parents[1] / "graphs" / "langgraph.json"
API_KEY = "serve-load-key"
RUN_TIMEOUT_S = 120.0  # a run still unfinished after this counts as hung
UNLOADED_RUNS = 5
_ITEM = re.compile(r"item (\d+)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_RUN_DONE = re.compile(r"Background run (?:succeeded|failed)[^\n]*")


def item_captioner(latency_s: float) -> ScriptedChatModel:
    """Describes 'item N' from the question it is asked about."""

    def respond(messages: list[BaseMessage]) -> str:
        item = _ITEM.search(messages[-1].text)
        return f"The picture shows item {item.group(1)} as three red circles." if item else "A picture."

    return ScriptedChatModel(respond=respond, latency_s=latency_s)


def item_reasoner(latency_s: float) -> ScriptedChatModel:
    """Answers N when the caption names item N."""

    def respond(messages: list[BaseMessage]) -> str:
        item = _ITEM.search(messages[-1].text.split("### Question")[0])
        return f"The caption names item {item.group(1)}: \\boxed{{{item.group(1)}}}" if item else "No item."

    return ScriptedChatModel(respond=respond, latency_s=latency_s)


def request(i: int, image: str) -> dict:
    return {"images": [image], "question": f"Which number does item {i} show?"}


def png_data_url() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), "white").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@dataclass
class LoadResult:
    """Outcome of one load phase."""

    sent: int = 0
    wall_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    answers: dict[int, str | None] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    hung: list[int] = field(default_factory=list)

    @property
    def ended(self) -> int:
        return len(self.answers) + len(self.errors)

    @property
    def correct(self) -> int:
        return sum(answer == str(i) for i, answer in self.answers.items())

    @property
    def throughput(self) -> float:
        return self.sent / self.wall_s

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def drive(client: Callable[[], Callable[[dict], Awaitable[dict]]], inputs: list[dict], clients: int) -> LoadResult:
    """`clients` workers, each with its own `client()`, take runs from one queue; each run's latency,
    answer or error is recorded."""
    result, queue = LoadResult(sent=len(inputs)), asyncio.Queue()
    for i, item in enumerate(inputs):
        queue.put_nowait((i, item))

    async def worker() -> None:
        call = client()
        while not queue.empty():
            i, item = queue.get_nowait()
            start = time.perf_counter()
            try:
                out = await asyncio.wait_for(call(item), RUN_TIMEOUT_S)
                if "__error__" in out:
                    raise_for_run_error(out["__error__"])
                result.answers[i] = out.get("answer")
            except TimeoutError:
                result.hung.append(i)
            except Exception as exc:  # a recorded error is an acceptable end of a run under faults
                result.errors[i] = f"{type(exc).__name__}: {exc}"
            result.latencies_s.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    result.wall_s = time.perf_counter() - start
    return result


def run_timings(log: str) -> dict[str, float | None]:
    """Medians, in seconds, of the runs the server log records as finished: `queue_wait_s` (created
    to started) and `exec_s` (started to ended); None when the log has none (e.g. a quieter log level)."""
    done = _RUN_DONE.findall(_ANSI.sub("", log))

    def median(field: str) -> float | None:
        values = [int(m.group(1)) / 1000 for line in done if (m := re.search(rf"\b{field}=(-?\d+)", line))]
        return statistics.median(values) if values else None

    return {"queue_wait_s": median("run_wait_time_ms"), "exec_s": median("run_exec_ms")}


def served_phase(server: LangGraphDevServer, inputs: list[dict], clients: int, context: dict | None = None) -> tuple[LoadResult, dict]:
    """One load phase on a running server, and the server log's timings of its runs."""
    start = len(server.log_text())
    result = asyncio.run(drive(sdk_client(server.url, context), inputs, clients))
    return result, run_timings(server.log_text()[start:])


def sdk_client(url: str, context: dict | None = None) -> Callable[[], Callable[[dict], Awaitable[dict]]]:
    """A factory of SDK clients (one connection pool each) that run the served graph statelessly."""

    def make() -> Callable[[dict], Awaitable[dict]]:
        client = get_client(url=url, api_key=API_KEY)

        async def call(item: dict) -> dict:
            return await client.runs.wait(None, "rapid", input=item, context=context, raise_error=False)

        return call

    return make


def run(args: argparse.Namespace) -> dict:
    image = png_data_url()
    captioner, reasoner = item_captioner(args.latency_s), item_reasoner(args.latency_s)
    flaky = item_reasoner(args.latency_s)
    servers = [
        ScriptedOpenAIServer(captioner, model_name="captioner"),
        ScriptedOpenAIServer(reasoner, model_name="reasoner"),
        ScriptedOpenAIServer(flaky, model_name="flaky-reasoner", failure_rate=args.failure_rate,
                             failure_kinds=("error", "hang"), hang_s=4 * args.call_timeout_s, seed=args.seed),
    ]
    for server in servers:
        server.start()
    try:
        with tempfile.TemporaryDirectory() as root:
            env = {
                "RAPID_API_KEYS": API_KEY, "RAPID_CAPTIONER": servers[0].spec, "RAPID_REASONER": servers[1].spec,
                "RAPID_ALLOWED_SPECS": servers[2].spec, "RAPID_CALL_TIMEOUT_S": str(args.call_timeout_s),
                "RAPID_IMAGE_ROOT": root,
            }
            return measure(args, env, image, servers, reasoner)
    finally:
        for server in servers:
            server.stop()


def measure(args, env: dict, image: str, servers: list[ScriptedOpenAIServer], reasoner: ScriptedChatModel) -> dict:
    inputs = [request(i, image) for i in range(args.runs)]
    with LangGraphDevServer(CONFIG, env=env, n_jobs_per_worker=args.clients) as server:
        asyncio.run(drive(sdk_client(server.url), [request(-1, image)], 1))  # warm-up
        unloaded_runs, unloaded_log = served_phase(server, inputs[:UNLOADED_RUNS], 1)
        unloaded = statistics.median(unloaded_runs.latencies_s)
        before = len(reasoner.calls)
        served, served_log = served_phase(server, inputs, args.clients)
        items = Counter(reasoned_items_since(reasoner, before))
        faulty = asyncio.run(drive(sdk_client(server.url, {"reasoner": servers[2].spec}), inputs, args.clients))
        alive = server.alive() and httpx.get(f"{server.url}/ok", timeout=10).status_code == 200
        after = asyncio.run(drive(sdk_client(server.url), inputs[:1], 1))
    unloaded_in_process, in_process = asyncio.run(measure_in_process(graph_from_settings(ServeSettings.from_env(env)), inputs, image, args.clients))
    one_job = None
    if args.one_job_runs:  # `langgraph dev` without --n-jobs-per-worker
        with LangGraphDevServer(CONFIG, env=env, n_jobs_per_worker=1) as server:
            one_job = summary(served_phase(server, inputs[: args.one_job_runs], args.clients)[0])
    ratio = served.throughput / in_process.throughput
    # closed-loop clients: throughput ~ clients / mean latency, so without the queue wait it would scale by
    mean_latency = statistics.mean(served.latencies_s)
    queue_wait = served_log["queue_wait_s"]
    return {
        "runs": args.runs, "clients": args.clients, "latency_s": args.latency_s,
        "unloaded_s": unloaded, "unloaded_in_process_s": unloaded_in_process, "unloaded_server_log": unloaded_log,
        "served": summary(served) | served_log | {
            "duplicates": sum(n - 1 for n in items.values() if n > 1),
            "missing_items": sorted(set(range(args.runs)) - set(items)),
            "p50_ratio": served.quantile(0.5) / unloaded, "p99_ratio": served.quantile(0.99) / unloaded,
        },
        "in_process": summary(in_process),
        "throughput_ratio": ratio,
        "ratio_without_queue_wait": ratio * mean_latency / (mean_latency - queue_wait) if queue_wait is not None else None,
        "one_job": one_job,
        "faults": summary(faulty) | {
            "injected": dict(servers[2].failures), "reasoner_calls": servers[2].requests,
            "server_up_after": alive and after.correct == 1,
        },
    }


async def measure_in_process(graph, inputs: list[dict], image: str, clients: int) -> tuple[float, LoadResult]:
    """The same phases in-process, in one event loop (cached async HTTP clients are bound to their loop)."""
    await drive(lambda: graph.ainvoke, [request(-1, image)], 1)  # warm-up
    unloaded = statistics.median((await drive(lambda: graph.ainvoke, inputs[:UNLOADED_RUNS], 1)).latencies_s)
    return unloaded, await drive(lambda: graph.ainvoke, inputs, clients)


def reasoned_items_since(model: ScriptedChatModel, start: int) -> list[int]:
    found = (_ITEM.search(calls[-1].text.split("### Question")[0]) for calls in model.calls[start:])
    return [int(m.group(1)) for m in found if m]


def summary(result: LoadResult) -> dict:
    return {
        "sent": result.sent, "ended": result.ended, "completed": len(result.answers), "correct": result.correct,
        "errors": dict(Counter(error.split(":")[0] for error in result.errors.values())), "hung": len(result.hung),
        "error_examples": sorted(set(result.errors.values()))[:5],
        "throughput_rps": result.throughput, "p50_s": result.quantile(0.5), "p99_s": result.quantile(0.99),
    }


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}s"


def report(r: dict) -> list[str]:
    """Print the results; return the failed correctness conditions."""
    s, p, f, u = r["served"], r["in_process"], r["faults"], r["unloaded_server_log"]
    print(f"serve_load: {r['runs']} runs, {r['clients']} concurrent clients, scripted models at {r['latency_s']}s/call over HTTP")
    print(f"  unloaded single run: served {r['unloaded_s']:.3f}s, in-process {r['unloaded_in_process_s']:.3f}s "
          f"(server overhead {r['unloaded_s'] - r['unloaded_in_process_s']:.3f}s per run, of which queue wait "
          f"{_seconds(u['queue_wait_s'])}; graph execution {_seconds(u['exec_s'])})")
    print(f"  served: completed/sent {s['completed']}/{s['sent']}, correct {s['correct']}, duplicates {s['duplicates']}, "
          f"errors {s['errors']}, hung {s['hung']}")
    print(f"  latency under load: p50 {s['p50_ratio']:.2f}x, p99 {s['p99_ratio']:.2f}x the unloaded run")
    print(f"  throughput: served {s['throughput_rps']:.2f} runs/s, in-process {p['throughput_rps']:.2f} runs/s "
          f"(same concurrency, {p['correct']}/{p['sent']} correct) -> ratio {r['throughput_ratio']:.2f} (P5 target >= 0.9)")
    print(f"  a served run under load (server log, medians): queue wait {_seconds(s['queue_wait_s'])}, graph execution "
          f"{_seconds(s['exec_s'])} (in-process run p50 {p['p50_s']:.3f}s), end to end p50 {s['p50_s']:.3f}s")
    if r["ratio_without_queue_wait"] is not None:
        print(f"  -> without the in-memory queue's wait the ratio would be {r['ratio_without_queue_wait']:.2f} "
              "(estimate: the served latency less the queue wait)")
    if (one := r["one_job"]) is not None:
        print(f"  langgraph dev's default of one run at a time (no --n-jobs-per-worker): {one['sent']} runs from "
              f"{r['clients']} clients at {one['throughput_rps']:.2f} runs/s "
              f"({one['throughput_rps'] / p['throughput_rps']:.2f} of in-process), p50 {one['p50_s']:.1f}s")
    print(f"  reasoner failing {f['injected']} of {f['reasoner_calls']} calls: ended {f['ended']}/{f['sent']} "
          f"(answered {f['completed']}, correct {f['correct']}, errors {f['errors']}), hung {f['hung']}, "
          f"server up after: {f['server_up_after']}")
    failed = []
    if not s["completed"] == s["correct"] == s["sent"] or s["duplicates"] or s["missing_items"]:
        failed.append("served load: not every run completed exactly once with the right answer")
    if p["correct"] != p["sent"]:
        failed.append(f"in-process baseline: only {p['correct']}/{p['sent']} runs answered correctly {p['error_examples']}")
    if f["ended"] != f["sent"] or f["hung"] or f["completed"] != f["correct"]:
        failed.append("fault load: a run hung, was lost or answered wrongly")
    if set(f["errors"]) - {"BackendError"}:
        failed.append(f"fault load: unexpected error types {f['errors']}")
    if not f["server_up_after"]:
        failed.append("fault load: the server did not answer afterwards")
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--latency-s", type=float, default=1.0, help="scripted latency of each model call (its decode time)")
    parser.add_argument("--failure-rate", type=float, default=0.2, help="share of reasoner calls that fail")
    parser.add_argument("--call-timeout-s", type=float, help="RAPID_CALL_TIMEOUT_S of the server (2 x latency + 1)")
    parser.add_argument("--one-job-runs", type=int, default=20,
                        help="runs sent to a server with one job at a time (langgraph dev's default); 0 skips it")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.call_timeout_s is None:
        args.call_timeout_s = 2 * args.latency_s + 1
    results = run(args)
    failed = report(results)
    if args.json:
        args.json.write_text(json.dumps(results | {"failed": failed}, indent=2))
    for problem in failed:
        print(f"FAILED: {problem}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
