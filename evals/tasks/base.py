"""The declarative `Benchmark` definition and the one loader every benchmark shares.

A benchmark module declares where its rows live (Hub id, configs, splits), how one row becomes a
`Sample` (`to_sample`), and its aggregate metrics. Rows come from the Hub through `datasets`, or
from a local copy: a parquet/JSONL file, or a folder holding `<split>.parquet`, `<split>-*.parquet`,
`<split>.jsonl` (also nested, as in a downloaded Hub snapshot) or, failing those, one file named
after the benchmark (`mmstar.parquet`, `<bench>_<split>.parquet`) or the folder's only data file;
image columns hold embedded bytes or paths relative to the data file's folder.
"""

from __future__ import annotations

import ast
import fnmatch
import hashlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from evals.judge_prompts import OfficialJudge
from evals.metrics import MetricsFn
from evals.sample import ImageSource, Sample
from rapid_agent.errors import ConfigError, InputError

_SPLIT_PATTERNS = ("{split}.parquet", "{split}-*.parquet", "{split}.jsonl", "{split}-*.jsonl", "{split}.json")
_DATA_SUFFIXES = (".parquet", ".jsonl", ".json")
_NAMED_PATTERNS = tuple(f"{{bench}}{sep}{{split}}{ext}" for sep in "_-" for ext in _DATA_SUFFIXES)
_BENCH_PATTERNS = tuple(f"{{bench}}{ext}" for ext in _DATA_SUFFIXES)
_ONLY_FILE = "the folder's only data file"
_METADATA_FILES = {"dataset_info.json", "dataset_infos.json", "dataset_dict.json", "state.json"}  # not rows
logger = logging.getLogger(__name__)


CaptionCheck = Callable[[str, Mapping[str, Any], Sequence[str]], bool | None]
"""`(sample id, metadata, captions)` -> whether the captions state, right, everything the question needs (None: cannot tell)."""


class Split(BaseModel):
    """A selectable split: the dataset splits it concatenates and an optional row filter."""

    model_config = ConfigDict(frozen=True)

    parts: tuple[str, ...]
    where: tuple[str, str] | None = None  # (column, value): keep only matching rows
    some_parts_local: bool = False  # a local copy may hold only some parts (e.g. a few DynaMath variants)


class Row:
    """One raw dataset row, with helpers that name the row in every error."""

    def __init__(self, data: Mapping[str, Any], where: str, image_root: Path | None, part: str):
        self.data, self.where, self.image_root, self.part = data, where, image_root, part  # part: the split loaded

    def error(self, message: str) -> InputError:
        return InputError(f"{self.where}: {message}")

    def get(self, column: str, default: Any = None) -> Any:
        return self.data.get(column, default)

    def present(self, column: str) -> bool:
        """Whether `column` holds a non-empty value in this row."""
        value = self.data.get(column)
        return not (value is None or (isinstance(value, float) and value != value) or not str(value).strip())

    def text(self, column: str) -> str:
        """A required, non-empty text column (numbers are turned into text)."""
        if not self.present(column):
            raise InputError(f"{self.where}: missing {column!r}")
        return str(self.data[column]).strip()

    def image(self, column: str, *, required: bool = True) -> ImageSource | None:
        """The image in `column` (embedded bytes, or a path resolved against the data folder)."""
        value = self.data.get(column)
        if isinstance(value, dict):
            value = value.get("bytes") or value.get("path")
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                raise InputError(f"{self.where}: missing image in column {column!r}")
            return None
        if isinstance(value, str):
            path = Path(value)
            if not path.is_absolute() and self.image_root is not None:
                path = self.image_root / path
            if not path.is_file():
                raise InputError(f"{self.where}: image file {value!r} (column {column!r}) does not exist")
            return str(path)
        return value

    def content_key(self, text: str, image_column: str) -> str:
        """A stable id from the row's content (`text` and the image's bytes), for copies without ids."""
        digest = hashlib.sha256(text.encode())
        source = self.image(image_column)
        if isinstance(source, str):
            digest.update(Path(source).read_bytes())
        elif isinstance(source, bytes):
            digest.update(source)
        else:
            digest.update(source.tobytes())
        return f"sha256-{digest.hexdigest()[:16]}"

    def choice(self, column: str, mapping: Mapping[str, str]) -> str:
        """Map a dataset's category value (e.g. an answer type) through `mapping`; unknown values fail."""
        value = self.text(column)
        if value not in mapping:
            raise InputError(f"{self.where}: unknown {column} {value!r}; this loader knows {sorted(mapping)}")
        return mapping[value]


def literal_list(value: Any) -> list[str] | None:
    """A list stored as its Python repr (MMMU's `options`, some MMMU answers); None if not a list."""
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            parsed = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            return None
        return [str(v) for v in parsed] if isinstance(parsed, (list, tuple)) else None
    return None


class Benchmark(BaseModel):
    """One benchmark: its source, splits, row → `Sample` mapping and aggregate metrics.

    `headline` names the sub-metrics shown beside overall accuracy in the main report table;
    `order` sorts samples (so `--limit` keeps composite problems and seed variants together);
    `cluster_by` names the metadata key of the problem a sample repeats (MathVerse versions, DynaMath
    variants, WeMath parts; None: independent items): intervals and paired tests resample whole problems;
    `generate` replaces the Hub for benchmarks built by code (the bundled one); `caption_holds`, where
    a benchmark knows exactly what each question needs, tells whether captions state all of it, right
    (`CaptionCheck`; `evals.attribution` uses it to attribute errors to perception or reasoning);
    `judge_prompt` names the official pipeline whose LLM prompt `--judge` uses (`evals.judge`; None: none known).
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    hub_id: str | None = None
    configs: tuple[str | None, ...] = (None,)
    splits: dict[str, Split]
    default_split: str
    to_sample: Callable[[Row], Sample]
    metrics: MetricsFn | None = None
    headline: tuple[str, ...] = ()
    order: Callable[[Sample], Any] | None = None
    generate: Callable[[str], list[dict[str, Any]]] | None = None
    cluster_by: str | None = None
    caption_holds: CaptionCheck | None = None
    judge_prompt: OfficialJudge | None = None

    def split(self, name: str | None) -> tuple[str, Split]:
        name = name or self.default_split
        if name not in self.splits:
            raise ConfigError(f"unknown split {name!r} for benchmark {self.name!r}; known splits: {sorted(self.splits)}")
        return name, self.splits[name]

    def load(self, split: str | None = None, path: str | Path | None = None, limit: int | None = None) -> list[Sample]:
        """The samples of `split` (from `path` when given, else the Hub); bad rows raise `InputError`."""
        split_name, spec = self.split(split)
        samples, problems = [], []
        for row in self._rows(split_name, spec, Path(path) if path else None):
            if spec.where and str(row.get(spec.where[0])) != spec.where[1]:
                continue
            try:
                samples.append(self.to_sample(row))
            except InputError as exc:
                problems.append(str(exc))
            except ValueError as exc:  # pydantic validation of the Sample
                problems.append(f"{row.where}: {_first_error(exc)}")
        if problems:
            shown = "; ".join(problems[:5]) + (f"; ... ({len(problems) - 5} more)" if len(problems) > 5 else "")
            raise InputError(f"{self.name}:{split_name}: {len(problems)} unusable row(s): {shown}")
        if not samples:
            raise InputError(f"{self.name}:{split_name}: no samples" + (f" with {spec.where[0]} == {spec.where[1]!r}" if spec.where else ""))
        _check_unique(samples, f"{self.name}:{split_name}")
        if self.order is not None:
            samples.sort(key=self.order)
        return samples[:limit] if limit is not None else samples

    def _rows(self, split: str, spec: Split, path: Path | None) -> Iterator[Row]:
        if self.generate is not None:
            if path is not None:
                raise ConfigError(f"benchmark {self.name!r} is generated by code; it takes no path")
            for i, data in enumerate(self.generate(split)):
                yield Row(data, f"{self.name}:{split} item {i}", None, split)
            return
        found_any = False
        for n, part in enumerate(spec.parts):
            if path is not None:
                try:
                    files = local_files(path, part, bench=self.name, single=len(spec.parts) == 1)
                except InputError:
                    if spec.some_parts_local and (found_any or n + 1 < len(spec.parts)):
                        continue
                    raise
                found_any = True
                for file in files:  # one by one: relative image paths are relative to their own file
                    where = file.relative_to(path) if path.is_dir() else file.name
                    for i, data in enumerate(_as_rows(_load_file(file))):
                        yield Row(data, f"{self.name} {where} row {i}", file.parent, part)
                continue
            for config in self.configs:
                dataset = _load_hub(self, config, part)
                label = f"{self.hub_id}{'/' + config if config else ''}:{part}"
                for i, data in enumerate(_as_rows(dataset)):
                    yield Row(data, f"{label} row {i}", None, part)


def local_files(path: Path, split: str, *, bench: str | None = None, single: bool = True) -> list[Path]:
    """The data files of `split` under a local path (a file is taken as the split itself).

    Tried in order: the split's own names (`val.parquet`, `val-00000-of-00001.parquet`, ...), then a
    file named after benchmark and split (`mmstar_val.parquet`, any case) and, when the split is the
    benchmark's only part (`single`: a file cannot hold one of DynaMath's ten variants), a file named
    after the benchmark (`mmstar.parquet`) or the folder's only data file. A file found by name or as
    the only file is logged; no match is an error listing the files found and the patterns tried.
    """
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError(f"local benchmark path {str(path)!r} does not exist")
    for pattern in _SPLIT_PATTERNS:
        files = sorted(path.rglob(pattern.format(split=split)))
        if files:
            return files
    data = sorted(p for p in path.rglob("*") if p.suffix in _DATA_SUFFIXES and p.name not in _METADATA_FILES
                  and p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
    patterns = (_NAMED_PATTERNS + (_BENCH_PATTERNS if single else ())) if bench else ()
    named = [p.format(bench=bench, split=split).lower() for p in patterns]
    for pattern in named:
        files = [p for p in data if fnmatch.fnmatch(p.name.lower(), pattern)]
        if len(files) == 1:
            logger.warning("%s:%s: no %s.parquet/.jsonl under %s; using %s", bench, split, split, path, files[0])
            return files
    if single and len(data) == 1:
        logger.warning("%s:%s: no %s.parquet/.jsonl under %s; using %s, %s", bench, split, split, path, data[0],
                       _ONLY_FILE)
        return data
    tried = [p.format(split=split) for p in _SPLIT_PATTERNS] + named + ([_ONLY_FILE] if single else [])
    found = [str(p.relative_to(path)) for p in data]
    shown = ", ".join(found[:20]) + (f", ... ({len(found) - 20} more)" if len(found) > 20 else "")
    raise InputError(
        f"no data file for split {split!r} under {str(path)!r}; tried: {', '.join(tried)}; "
        f"found: {shown or 'no parquet/JSONL files'}"
    )


def _load_file(file: Path):
    import datasets

    builder = {".parquet": "parquet", ".jsonl": "json", ".json": "json"}.get(file.suffix)
    if builder is None:
        raise InputError(f"unsupported data file {str(file)!r}: use parquet or JSONL")
    try:
        return datasets.load_dataset(builder, data_files=str(file), split="train")
    except Exception as exc:  # datasets raises many types for unreadable files
        raise InputError(f"cannot read {str(file)!r}: {type(exc).__name__}: {exc}") from None


def _load_hub(bench: Benchmark, config: str | None, split: str):
    import datasets

    try:
        return datasets.load_dataset(bench.hub_id, config, split=split)
    except Exception as exc:  # offline, gated, renamed: say what was tried and the way out
        where = f"{bench.hub_id}" + (f" (config {config!r})" if config else "") + f" split {split!r}"
        raise InputError(
            f"cannot load {where} from the Hugging Face Hub: {type(exc).__name__}: {str(exc)[:300]}. "
            f"For an offline or private copy pass --benchmark {bench.name}=PATH (parquet/JSONL + images)"
        ) from None


def _as_rows(dataset) -> Iterator[Mapping[str, Any]]:
    """Rows with image columns left encoded ({'bytes', 'path'}): hashing and lazy decoding stay cheap."""
    import datasets

    for column, feature in dataset.features.items():
        if isinstance(feature, datasets.Image):
            dataset = dataset.cast_column(column, datasets.Image(decode=False))
    return iter(dataset)


def _check_unique(samples: list[Sample], where: str) -> None:
    seen: set[str] = set()
    for sample in samples:
        if sample.id in seen:
            raise InputError(f"{where}: duplicate sample id {sample.id!r}")
        seen.add(sample.id)


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"field {'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    return str(exc)
