"""Benchmark loaders on fixture files in each benchmark's published format, and bad-input messages."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import datasets
import pytest
from PIL import Image

from evals.benchmarks import BENCHMARKS, get_benchmark
from evals.config import BenchmarkRef
from evals.scoring import grade_prediction
from rapid_agent.errors import ConfigError, InputError

FIXTURES = Path(__file__).parent / "fixtures" / "evals"


def load(name: str, split: str | None = None, path: Path | None = None):
    return get_benchmark(name).load(split, path or FIXTURES / name)


def by_id(samples):
    return {s.id: s for s in samples}


def decoded(source) -> Image.Image:
    return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)


def test_mathvista_choice_text_answers_precision_and_image_folder():
    samples = by_id(load("mathvista"))
    assert list(samples) == ["1", "2", "3", "4"]
    mc = samples["1"]
    assert mc.options == ("3", "4", "5") and mc.answer == "4" and mc.answer_type == "multiple_choice"
    # the answer is the choice *text*: a reply of letter B or of "4" is right, "A" is not
    assert grade_prediction(mc, "B").correct and grade_prediction(mc, "4").correct
    assert not grade_prediction(mc, "A").correct
    assert samples["2"].answer_type == "integer" and samples["2"].options is None
    flt = samples["3"]
    assert (flt.answer_type, flt.precision, flt.unit) == ("float", 2, "cm")
    assert grade_prediction(flt, "1.2501 cm").correct and not grade_prediction(flt, "1.3").correct
    assert samples["4"].answer_type == "list" and grade_prediction(samples["4"], "1, 2").correct
    # images come from the JSONL's relative paths, resolved against the data folder
    assert Path(mc.images[0]).is_file() and decoded(mc.images[0]).size == (24, 24)
    assert mc.metadata["task"] == "figure question answering"


def test_mathverse_versions_text_only_and_vision_only_quirks():
    samples = by_id(load("mathverse"))
    assert len(samples) == 8
    assert {s.metadata["version"] for s in samples.values()} == {
        "Text Dominant", "Text Lite", "Text Only", "Vision Intensive", "Vision Dominant", "Vision Only",
    }
    assert samples["3"].metadata["version"] == "Text Only" and samples["3"].images == ()  # image "" = none
    vision_only = samples["6"]
    assert vision_only.question.startswith("According to the question shown in the image")  # query_wo stands in
    assert vision_only.answer == "A" and vision_only.answer_type == "multiple_choice" and vision_only.options is None
    assert grade_prediction(samples["1"], "A").correct and not grade_prediction(samples["1"], "B").correct
    free = samples["7"]
    assert free.answer_type == "auto" and grade_prediction(free, "4\\pi").correct
    # a version split keeps only that version
    assert [s.id for s in load("mathverse", "vision_only")] == ["6", "8"]


def test_mathvision_letter_or_option_text_and_free_form():
    samples = by_id(load("mathvision", "testmini"))
    mc = samples["1"]
    assert mc.options == ("A", "B", "C", "D", "E") and mc.answer == "C"
    assert isinstance(mc.images[0], bytes)  # decoded_image embedded in the parquet
    assert grade_prediction(mc, "C").correct and not grade_prediction(mc, "D").correct
    free = samples["2"]
    assert free.options is None and grade_prediction(free, "2\\sqrt{3}").correct
    assert grade_prediction(free, "\\sqrt{12}").correct  # symbolic equality
    assert free.metadata["subject"] == "metric geometry - length"


def test_mmmu_string_options_image_tags_and_list_answers():
    samples = by_id(load("mmmu"))
    assert set(samples) == {"validation_Art_1", "validation_Math_1", "validation_Math_2"}  # nested subject folders
    mc = samples["validation_Math_1"]
    # options were a string repr; the image-only option reads as text; images 1-3 are the tagged ones
    assert mc.options == ("The first", "The second", "(image 3)")
    assert len(mc.images) == 3 and len({bytes(i) for i in mc.images}) == 3
    assert mc.metadata == {"subject": "Math", "domain": "Science"}
    assert grade_prediction(mc, "C").correct
    open_q = samples["validation_Math_2"]
    assert open_q.answer == "24" and open_q.alt_answers == ("24.0",) and open_q.options is None
    assert grade_prediction(open_q, "24").correct and not grade_prediction(open_q, "25").correct
    assert samples["validation_Art_1"].metadata["domain"] == "Art and Design"


def test_mmstar_inline_options_and_categories():
    samples = load("mmstar")
    assert [s.id for s in samples] == ["0", "1", "2"]
    assert all(s.options is None and "Options: A:" in s.question for s in samples)
    assert [s.metadata["category"] for s in samples] == ["coarse perception", "math", "instance reasoning"]
    assert grade_prediction(samples[0], "(C)").correct and not grade_prediction(samples[0], "A").correct


def test_wemath_image_path_column_and_composite_keys():
    samples = load("wemath")
    assert [s.id for s in samples] == [
        "1/2steps_1", "1/2steps_2", "1/2steps_multi", "2/3steps_1", "2/3steps_2", "2/3steps_3", "2/3steps_multi",
    ]
    first = samples[0]
    assert first.question.endswith("\nA. 6; B. 8; C. 12; D. 24")  # question + "\n" + option
    assert decoded(first.images[0]).size == (24, 24)  # the PIL image stored under `image_path`
    assert first.metadata["problem"] == "1" and first.metadata["key"] == "2steps_1"


def test_logicvista_multi_letter_answers_compare_as_sets():
    sample = by_id(load("logicvista"))["1"]
    assert sample.answer == "A, C" and sample.metadata["skill"] == "spatial"
    assert grade_prediction(sample, "C, A").correct and grade_prediction(sample, "A and C").correct
    assert not grade_prediction(sample, "A").correct and not grade_prediction(sample, "A, B, C").correct


def test_dynamath_variants_seeds_and_float_tolerance():
    samples = load("dynamath")
    assert [s.id for s in samples] == ["1@v1", "1@v2", "2@v1", "2@v2", "3@v1", "3@v2"]  # seed-major order
    assert [s.metadata["variant"] for s in samples] == [1, 2] * 3
    flt = by_id(samples)["2@v2"]
    assert flt.answer_type == "float" and flt.tolerance == 1e-3
    assert grade_prediction(flt, "-1.2504").correct and not grade_prediction(flt, "-1.26").correct
    assert by_id(samples)["1@v1"].answer_type == "multiple_choice" and grade_prediction(by_id(samples)["1@v1"], "B").correct
    assert [s.id for s in load("dynamath", "sample_variant2")] == ["1@v2", "2@v2", "3@v2"]


def test_bundled_benchmark_is_generated_offline_and_deterministic():
    first, second = get_benchmark("bundled").load(), get_benchmark("bundled").load()
    assert len(first) == 36 and [s.id for s in first] == [s.id for s in second]
    assert {s.metadata["category"] for s in first} == {"bars", "count", "geometry", "table"}
    assert all(a.images == b.images for a, b in zip(first, second, strict=True))
    assert all(decoded(s.images[0]).size == (320, 240) for s in first)
    triangle = by_id(first)["geometry-1a"]  # hypotenuse of a right triangle with its legs labelled
    assert triangle.answer in {"5", "10", "13", "17", "15"} and triangle.answer_type == "integer"
    assert get_benchmark("bundled").load(limit=5) == first[:5]


def test_hub_loading_names_ids_configs_and_splits(monkeypatch):
    calls = []
    rows = datasets.load_dataset("parquet", data_files=str(FIXTURES / "mmstar" / "val.parquet"), split="train")

    def fake_load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split))
        return rows

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert len(get_benchmark("mmstar").load()) == 3
    assert calls == [("Lin-Chen/MMStar", None, "val")]
    calls.clear()
    with pytest.raises(InputError):  # MMMU's rows are not MMStar's; only the calls matter here
        get_benchmark("mmmu").load("validation")
    assert len(calls) == 30 and {c[0] for c in calls} == {"MMMU/MMMU"} and {c[2] for c in calls} == {"validation"}
    assert "Accounting" in {c[1] for c in calls} and "Mechanical_Engineering" in {c[1] for c in calls}
    calls.clear()
    with pytest.raises(InputError):
        get_benchmark("dynamath").load()
    assert [c[2] for c in calls] == [f"sample_variant{i}" for i in range(1, 11)]
    calls.clear()
    with pytest.raises(InputError, match="mathverse:text_only: no samples with problem_version == 'Text Only'"):
        get_benchmark("mathverse").load("text_only")
    assert calls == [("AI4Math/MathVerse", "testmini", "testmini")]


def test_hub_failure_says_how_to_use_a_local_copy(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(InputError, match=r"cannot load We-Math/We-Math split 'testmini'.*--benchmark wemath=PATH"):
        get_benchmark("wemath").load()


def test_unknown_benchmark_and_split_are_config_errors():
    with pytest.raises(ConfigError, match=r"unknown benchmark 'mathvistaa'; known benchmarks: \['bundled'"):
        get_benchmark("mathvistaa")
    with pytest.raises(ConfigError, match=r"unknown split 'test' for benchmark 'mathvista'; known splits: \['testmini'\]"):
        BenchmarkRef.parse("mathvista:test")
    with pytest.raises(ConfigError, match="local path"):
        BenchmarkRef.parse("mmstar=/no/such/folder")
    with pytest.raises(InputError, match="no data file for split 'val'.*found"):
        get_benchmark("mmstar").load(path=FIXTURES / "wemath")
    assert BenchmarkRef.parse("mathverse:vision_only").label == "mathverse:vision_only"
    assert BenchmarkRef.parse("mathverse:testmini").label == "mathverse"
    assert sorted(BENCHMARKS) == sorted(
        ["bundled", "mathvista", "mathverse", "mathvision", "mmmu", "mmstar", "wemath", "logicvista", "dynamath"]
    )


def _rewrite_jsonl(tmp_path: Path, name: str, edit) -> Path:
    folder = tmp_path / name
    shutil.copytree(FIXTURES / name, folder)
    path = folder / "testmini.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    edit(rows)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_rows_missing_an_image_or_answer_are_named(tmp_path):
    def damage(rows):
        rows[1]["answer"] = ""
        rows[2]["image"] = "images/missing.png"
        rows[3]["image"] = None

    folder = _rewrite_jsonl(tmp_path, "mathvista", damage)
    with pytest.raises(InputError) as info:
        get_benchmark("mathvista").load(path=folder)
    message = str(info.value)
    assert "3 unusable row(s)" in message
    assert "row 1: missing 'answer'" in message
    assert "row 2: image file 'images/missing.png' (column 'image') does not exist" in message
    assert "row 3: missing image in column 'image'" in message


def test_unknown_answer_type_is_named(tmp_path):
    folder = _rewrite_jsonl(tmp_path, "mathvista", lambda rows: rows[1].update(answer_type="matrix"))
    with pytest.raises(InputError, match=r"row 1: unknown answer_type 'matrix'; this loader knows \['float', 'integer', 'list', 'text'\]"):
        get_benchmark("mathvista").load(path=folder)


def test_parquet_row_without_image_is_named(tmp_path):
    table = datasets.load_dataset("parquet", data_files=str(FIXTURES / "mmstar" / "val.parquet"), split="train")
    table = table.map(lambda row, i: {"image": None} if i == 1 else {}, with_indices=True)
    table.to_parquet(str(tmp_path / "val.parquet"))
    with pytest.raises(InputError, match="val.parquet row 1: missing image in column 'image'"):
        get_benchmark("mmstar").load(path=tmp_path)


def test_a_single_data_file_loads_and_an_unreadable_one_is_named(tmp_path):
    assert [s.id for s in get_benchmark("mmstar").load(path=FIXTURES / "mmstar" / "val.parquet")] == ["0", "1", "2"]
    (tmp_path / "val.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match=r"cannot read '.*val.parquet'"):
        get_benchmark("mmstar").load(path=tmp_path)
