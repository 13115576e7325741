"""`python -m evals.run`: benchmark accuracy per reasoner, one captioning pass for all of them.

    python -m evals.run                                   # the main job (below), offline, about a minute
    python -m evals.run --captioner hf:Qwen/Qwen2.5-VL-7B-Instruct \\
        --reasoner openai:deepseek-ai/DeepSeek-R1-Distill-Qwen-7B@http://127.0.0.1:8000/v1 \\
        --reasoner openai:Qwen/Qwen3-8B@http://127.0.0.1:8001/v1 \\
        --benchmark mathvista --benchmark mmmu --mode decoupled --mode direct
    python -m evals.run --captioner miniworld:captioner --captioner miniworld:captioner-sft \
        --reasoner miniworld:reasoner-small --benchmark miniworld --prompt paper-train   # captioners side by side
    python -m evals.run --captioner miniworld:captioner,miniworld:captioner-sft \
        --reasoner miniworld:reasoner-small --benchmark miniworld --prompt paper-train   # both captioners fused
    python -m evals.run ... --reasoner-samples 5 --temperature 0.6    # 5 samples per question, vote@5 and pass@5
    python -m evals.run --captioner tiny --reasoner tiny --benchmark bundled   # random models: plumbing only
    python -m evals.run --resume ...                      # continue after a crash or Ctrl-C

With no --captioner, --reasoner or --benchmark it runs the main job: the shipped miniature-world
models (captioners miniworld:captioner and miniworld:captioner-sft, reasoners miniworld:reasoner-small
and miniworld:reasoner-large) on 40 miniworld items, --prompt paper-train, all three modes (--mode,
--prompt and --limit given with it win). Otherwise name --captioner and --benchmark, and --reasoner
for decoupled and blind runs. Benchmarks are `NAME[:SPLIT][=PATH]` (PATH: a local parquet/JSONL
copy); `--list-benchmarks` shows them. Reports land in `--output-dir` (default `runs/evals/<config digest>`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from evals.config import MODES, BenchmarkRef, EvalConfig, captioner_folders, combined_digest
from evals.console import describe_totals
from evals.judge import PROMPT_MODES
from evals.merge import merge
from evals.report import PLOT_FILE, REPORT_FILE, SUMMARY_FILE
from evals.runner import RunOptions, default_cache_path, run_eval
from evals.store import SAMPLES_FILE
from evals.tasks import BENCHMARKS
from rapid_agent.errors import ConfigError, RapidError
from rapid_agent.models.spec import DEFAULT_MAX_NEW_TOKENS, TINY_MAX_NEW_TOKENS, GenerationSettings

MAIN_JOB = {
    "captioners": ["miniworld:captioner", "miniworld:captioner-sft"],
    "reasoners": ["miniworld:reasoner-small", "miniworld:reasoner-large"],
    "benchmarks": ["miniworld"],
    "modes": list(MODES),
    "prompt": "paper-train",
    "limit": 40,
}
"""The flags of a run that names no --captioner, --reasoner or --benchmark: the README's main job."""
MAIN_JOB_NOTICE = (
    f"main job (no --captioner/--reasoner/--benchmark given): captioners {', '.join(MAIN_JOB['captioners'])}; "
    f"reasoners {', '.join(MAIN_JOB['reasoners'])}; benchmark {', '.join(MAIN_JOB['benchmarks'])}, "
    f"--limit {MAIN_JOB['limit']}, --prompt {MAIN_JOB['prompt']}, every --mode. Evaluate other models with "
    "--captioner, --reasoner and --benchmark (the random test models: --captioner tiny --reasoner tiny --benchmark bundled)"
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m evals.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    models = p.add_argument_group("models and modes")
    models.add_argument("--captioner", action="append", dest="captioners", metavar="SPEC",
                        help="captioner spec; repeat to compare several, each in its own sub-folder, merged into one "
                             "report (default: the main job's). SPEC,SPEC,... is one captioner list: each describes "
                             "the image and the reasoner reads all the descriptions, labelled")
    models.add_argument("--reasoner", action="append", dest="reasoners", metavar="SPEC",
                        help="reasoner spec; repeat to compare several (default: the main job's)")
    models.add_argument("--mode", action="append", dest="modes", choices=MODES,
                        help="decoupled (RAPID), direct (the captioner answers alone), blind (reasoner, no caption); "
                             "repeatable (default: decoupled; the main job: all three)")
    models.add_argument("--prompt", help="prompt preset: paper-eval (with the tentative answer) or paper-train "
                        "(default: paper-eval; the main job: paper-train)")
    models.add_argument("--max-recaption-rounds", type=int, default=0)
    models.add_argument("--reasoner-samples", type=int, default=1, metavar="K",
                        help="answer each sample K times from the same caption(s) and grade the majority answer; "
                             "the report adds vote@K and pass@K (sample with --temperature > 0; default 1)")
    models.add_argument("--judge", metavar="SPEC", help="LLM answer extractor (off): reads every response, decides those "
                        "the rules find no answer in; the report lists where its verdict and the rules' differ")
    models.add_argument("--judge-prompt", choices=PROMPT_MODES, default="official",
                        help="the judge's prompts: official (each benchmark's official pipeline's extraction prompt, "
                        "with its examples; MathVerse: extract, then score; the generic prompt where a pipeline has no "
                        "LLM step) or generic (default: %(default)s)")
    data = p.add_argument_group("benchmarks")
    data.add_argument("--benchmark", action="append", dest="benchmarks", metavar="NAME[:SPLIT][=PATH]",
                      help="repeatable (default: the main job's, miniworld)")
    data.add_argument("--split", help="split for every --benchmark given without one")
    data.add_argument("--limit", type=int, help="first N samples of each benchmark (default: all; the main job: 40)")
    data.add_argument("--list-benchmarks", action="store_true", help="list benchmarks and splits, then exit")
    gen = p.add_argument_group("generation (reasoner; --caption-* for the captioner)",
                               "A served model's budget is fitted to the context its server reports, with a notice.")
    gen.add_argument("--temperature", type=float, default=0.0, help="(the paper's reasoner: 0.6 with --top-p 0.95)")
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--reason-max-new-tokens", "--max-new-tokens", type=int, dest="reason_max_new_tokens",
                     metavar="N", help=f"token budget of the reasoners and the judge (never the captioner); default "
                     f"{DEFAULT_MAX_NEW_TOKENS['reasoner']}, the paper's ({TINY_MAX_NEW_TOKENS} for 'tiny'); "
                     "--max-new-tokens is an alias")
    gen.add_argument("--caption-temperature", type=float, default=0.0)
    gen.add_argument("--caption-top-p", type=float, default=1.0)
    gen.add_argument("--caption-max-new-tokens", type=int, metavar="N",
                     help=f"token budget of the captioner (its captions and tentative answers; part of the caption "
                     f"cache key); default {DEFAULT_MAX_NEW_TOKENS['captioner']} ({TINY_MAX_NEW_TOKENS} for 'tiny')")
    gen.add_argument("--timeout", type=float, default=600.0,
                     help="per-request timeout for remote endpoints (s), counting the time a request waits in the "
                     "server's queue; once a server completes no call for 2 timeouts it counts as hung: its remaining "
                     "calls fail at once and re-running resumes (default 600)")
    gen.add_argument("--batch-size", type=int, default=8, help="micro-batch size of local hf: models")
    gen.add_argument("--seed", type=int, default=0)
    run = p.add_argument_group("execution")
    run.add_argument("--output-dir", type=Path,
                     help="default: runs/evals/<config digest> (named by the configuration; re-running resumes it)")
    run.add_argument("--resume", action="store_true", help="continue the run in --output-dir, skipping finished samples")
    run.add_argument("--concurrency", type=int, default=8, help="requests in flight at once (default 8)")
    run.add_argument("--retries", type=int, default=3, help="retries of transient backend errors, with backoff")
    run.add_argument("--cache", type=Path, default=default_cache_path(), help="caption cache (SQLite; default %(default)s)")
    run.add_argument("--no-cache", action="store_true", help="neither read nor write the caption cache")
    run.add_argument("--show", type=int, default=3, help="samples printed in full per run (default 3)")
    run.add_argument("--no-progress", action="store_true")
    return p


def uses_main_job(args: argparse.Namespace) -> bool:
    """True when no --captioner, --reasoner or --benchmark is given: the run is `MAIN_JOB`."""
    return not (args.captioners or args.reasoners or args.benchmarks)


def configs_from_args(args: argparse.Namespace) -> list[EvalConfig]:
    """One configuration per `--captioner`, the rest shared; blind runs (no captioner) with the first only."""
    if uses_main_job(args):
        args = argparse.Namespace(**(vars(args) | {k: v for k, v in MAIN_JOB.items() if getattr(args, k) is None}))
    missing = [flag for flag, given in (("--captioner", args.captioners), ("--benchmark", args.benchmarks)) if not given]
    if missing:
        raise ConfigError(f"{' and '.join(missing)} missing: name --captioner, --reasoner and --benchmark together, "
                          "or none of them for the main job")
    captioners = args.captioners
    configs = [config_from_args(args, captioners[0])]
    for captioner in captioners[1:]:
        config = config_from_args(args, captioner)
        modes = tuple(mode for mode in config.modes if mode != "blind")
        if not modes:
            raise ConfigError("blind runs read no caption: compare captioners with --mode decoupled or direct")
        configs.append(config.model_copy(update={"modes": modes}))
    return configs


def config_from_args(args: argparse.Namespace, captioner: str) -> EvalConfig:
    reasoners = tuple(args.reasoners or ())
    benchmarks = tuple(
        BenchmarkRef.parse(b if ":" in b.split("=")[0] or not args.split else _with_split(b, args.split))
        for b in args.benchmarks
    )

    def generation(temperature: float, top_p: float, max_new_tokens: int | None) -> GenerationSettings:
        # an unset budget stays None: each model then gets its role's default (64 for 'tiny', even beside others)
        return GenerationSettings(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                                  timeout_s=args.timeout, max_batch_size=args.batch_size)

    specs = tuple(spec.strip() for spec in captioner.split(","))
    return EvalConfig(
        captioner=specs if len(specs) > 1 else specs[0],
        reasoner_samples=args.reasoner_samples,
        reasoners=reasoners,
        benchmarks=benchmarks,
        modes=tuple(args.modes or ["decoupled"]),
        prompt_preset=args.prompt or "paper-eval",
        max_recaption_rounds=args.max_recaption_rounds,
        limit=args.limit,
        seed=args.seed,
        captioner_generation=generation(args.caption_temperature, args.caption_top_p, args.caption_max_new_tokens),
        reasoner_generation=generation(args.temperature, args.top_p, args.reason_max_new_tokens),
        judge=args.judge,
        judge_prompt=args.judge_prompt,
    )


def _with_split(ref: str, split: str) -> str:
    name, sep, path = ref.partition("=")
    return f"{name}:{split}{sep}{path}"


def list_benchmarks() -> str:
    lines = []
    for name, bench in BENCHMARKS.items():
        source = bench.hub_id or "built in (no download)"
        lines.append(f"{name:<11} {source:<26} splits: {', '.join(bench.splits)} (default {bench.default_split})")
    return "\n".join(lines)


def _quiet_library_progress_bars() -> None:
    """Keep the console for the eval's own progress: no weight-loading or dataset-building bars."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _quiet_library_progress_bars()
    if args.list_benchmarks:
        print(list_benchmarks())
        return 0
    output_dir = args.output_dir
    if uses_main_job(args):
        print(MAIN_JOB_NOTICE, flush=True)
    try:
        configs = configs_from_args(args)
        # the default folder is named by the configuration, so it can only hold this run: re-running continues it
        resume = args.resume or output_dir is None
        output_dir = output_dir or Path("runs") / "evals" / combined_digest(configs)
        hint = "re-running the same command continues it" if args.output_dir is None else "continue it with --resume"
        print(f"output: {output_dir}  ({hint})", flush=True)
        folders = captioner_folders([c.captioner_name for c in configs]) if len(configs) > 1 else {}
        results = []
        for config in configs:
            folder = output_dir / folders[config.captioner_name] if folders else output_dir
            if folders:
                print(f"\n== captioner {config.captioner_name} -> {folder}", flush=True)
            options = RunOptions(
                output_dir=folder, resume=resume, concurrency=args.concurrency, retries=args.retries,
                cache_path=None if args.no_cache else args.cache, show=args.show, progress=not args.no_progress,
            )
            results.append(run_eval(config, options))
        if folders:
            merge([output_dir / name for name in folders.values()], output_dir, seed=args.seed)
    except RapidError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:  # settings out of range (e.g. a negative --limit), unknown preset
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        print(f"error: invalid settings: {problems}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. writing reports on a full disk (the store and the cache raise StorageError)
        print(f"error: {exc.filename or output_dir}: {exc.strerror or exc}; finished samples are kept, continue "
              "with --resume once it is fixed", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished samples are kept in {output_dir}; continue with --resume", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)  # do not wait for requests in flight: every finished sample is already on disk
    report = (output_dir / REPORT_FILE).read_text()
    print("\n" + report.split("\n## Sub-metrics")[0].split("\n## Paired")[0].strip())
    totals = "\n".join(describe_totals(result) for result in results)
    print(
        f"\n{totals}\nreports: "
        + ", ".join(str(output_dir / f) for f in (SAMPLES_FILE, SUMMARY_FILE, REPORT_FILE, PLOT_FILE))
    )
    return 1 if any(result.errors for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
