"""`python -m evals.merge RUN_DIR... --output-dir OUT`: several runs in one comparison report.

Records are read from each folder's `samples.jsonl`; a run label found in more than one folder is
suffixed with its folder's name. OUT receives the merged `samples.jsonl` and the usual reports.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from evals.lock import FolderLock
from evals.report import write_reports
from evals.store import CONFIG_FILE, SAMPLES_FILE, SampleRecord, read_records
from rapid_agent.errors import InputError, RapidError


def merge(folders: list[Path], output_dir: Path, *, seed: int = 0) -> list[SampleRecord]:
    """Merge the runs of `folders` into `output_dir` (reports included); returns the merged records."""
    if len({f.resolve() for f in folders}) != len(folders):
        raise InputError(f"a run folder is listed twice: {[str(f) for f in folders]}")
    names = Counter(f.name for f in folders)
    per_folder = {}
    for folder in folders:
        if not (folder / SAMPLES_FILE).is_file():
            raise InputError(f"{str(folder)!r} is not a run folder (no {SAMPLES_FILE})")
        per_folder[folder] = list(read_records(folder / SAMPLES_FILE).values())
    runs_in = Counter(label for records in per_folder.values() for label in {r.run for r in records})
    merged = []
    for folder, records in per_folder.items():
        for record in records:
            if runs_in[record.run] > 1:
                where = folder.name if names[folder.name] == 1 else str(folder)
                record = record.model_copy(update={"run": f"{record.run} ({where})"})
            merged.append(record)
    if output_dir.resolve() in {f.resolve() for f in folders}:
        raise InputError(f"--output-dir {str(output_dir)!r} is one of the run folders being merged")
    output_dir.mkdir(parents=True, exist_ok=True)
    lock = FolderLock(output_dir)  # never write into a folder an eval run (or another merge) holds
    lock.acquire()
    try:
        with (output_dir / SAMPLES_FILE).open("w", encoding="utf-8") as handle:
            handle.writelines(record.model_dump_json() + "\n" for record in merged)
        configs = {str(f): json.loads((f / CONFIG_FILE).read_text()) for f in folders if (f / CONFIG_FILE).is_file()}
        write_reports(merged, output_dir, config={"merged_from": configs}, seed=seed)
    finally:
        lock.release()
    return merged


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m evals.merge", description=__doc__)
    p.add_argument("folders", nargs="+", type=Path, help="run folders (each with samples.jsonl)")
    p.add_argument("--output-dir", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = p.parse_args(argv)
    try:
        merge(args.folders, args.output_dir, seed=args.seed)
    except RapidError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print((args.output_dir / "report.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
