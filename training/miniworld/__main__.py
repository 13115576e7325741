"""`python -m training.miniworld [--quick] [--out DIR]`: train the miniature world from scratch and test RAPID's claims.

Stages: SFT of the small and large reasoners, SFT of the captioner, VPO (`python -m training.vpo --config
training/recipes/miniworld.yaml`), then `python -m evals.run` on held-out charts. Re-running the same command
resumes at the first unfinished stage. The full run installs the fp16 weights into
`rapid_agent/miniworld/weights` (with a manifest) and writes `docs/miniworld.md`; `--quick` (CI,
a few minutes) writes its report into OUT only.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from training.miniworld.pipeline import MiniworldConfig, Pipeline
from training.miniworld.report import claims, install, write_docs
from training.miniworld.threads import ThreadShare


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.miniworld", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a few minutes end to end (CI); nothing is installed")
    p.add_argument("--out", type=Path, help="work folder (default runs/miniworld, or runs/miniworld-quick)")
    p.add_argument("--docs", type=Path, help="report file (default docs/miniworld.md; OUT/miniworld.md with --quick)")
    p.add_argument("--no-install", action="store_true", help="keep the shipped weights as they are")
    p.add_argument("--config", type=Path, help="JSON file of MiniworldConfig fields (over the full or quick settings)")
    p.add_argument("--vpo-learning-rate", type=float, help="VPO learning rate (default from the config)")
    p.add_argument("--vpo-steps", type=int, help="VPO optimizer steps (default from the config)")
    p.add_argument("--lr-scale", type=float, help="multiply every learning rate (a tiny value checks the claims fail)")
    p.add_argument("--seed", type=int, help="seed of every stage (default from the config: 0)")
    p.add_argument("--stop-after", choices=["reasoner-small", "reasoner-large", "captioner-sft", "captioner", "evals"],
                   help="stop once this stage is done (a later run resumes there)")
    p.add_argument("--shipped", nargs="+", metavar="STAGE",
                   choices=["reasoner-small", "reasoner-large", "captioner-sft", "captioner"],
                   help="take these stages' models from the package as they are instead of training them")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for torch (default 2)")
    p.add_argument("--threads-file", type=Path,
                   help="a file holding the thread count, re-read at each stage and every few training steps (CI hands "
                   "the quick run a second core once the rest of the suite is done); implies --jobs 1")
    p.add_argument("--jobs", type=int, choices=(1, 2), default=2,
                   help="2 (default): the captioner (SFT, then VPO) trains in a second process beside the reasoners, threads split")
    p.add_argument("--only", nargs="+", metavar="STAGE", help="run just these stages (the pipeline's side lane uses it)")
    p.add_argument("--side-lane", action="store_true",
                   help="with --only: this is a two-lane run's second lane (wait for the first lane's models)")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    if not torch.cuda.is_available():
        torch.set_num_threads(args.threads)
    overrides = json.loads(args.config.read_text()) if args.config else {}
    overrides |= ({"seed": args.seed} if args.seed is not None else {})
    overrides |= {"vpo_learning_rate": args.vpo_learning_rate} if args.vpo_learning_rate else {}
    overrides |= {"lr_scale": args.lr_scale} if args.lr_scale else {}
    overrides |= {"vpo_steps": args.vpo_steps} if args.vpo_steps else {}
    overrides |= {"shipped": tuple(args.shipped)} if args.shipped else {}
    config = MiniworldConfig.quick(**overrides) if args.quick else MiniworldConfig(**overrides)
    out = args.out or Path("runs") / ("miniworld-quick" if args.quick else "miniworld")
    docs = args.docs or (out / "miniworld.md" if args.quick else Path("docs") / "miniworld.md")
    threads = ThreadShare(args.threads, args.threads_file) if args.threads_file else None
    pipeline = Pipeline(config, out, progress=not args.no_progress, side_lane=args.side_lane, threads=threads)
    if args.only:
        for name in args.only:
            pipeline.run_stage(name)
        return 0
    result = pipeline.run(stop_after=args.stop_after, jobs=1 if args.threads_file else args.jobs)
    if args.stop_after and args.stop_after != "evals":
        return 0
    found = claims(out / "evals" / "all" / "summary.json")
    (out / "claims.json").write_text(json.dumps(found, indent=1) + "\n")
    command = ["python", "-m", "training.miniworld", *(argv if argv is not None else sys.argv[1:])]
    write_docs(out, docs, found, result, command=command, quick=args.quick)
    if not args.quick and not args.no_install:
        install(out, command=command, config=config)
    print("\n" + (out / "summary.txt").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
