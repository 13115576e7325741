"""Benchmark loaders on fixture files in each benchmark's published format, and bad-input messages."""

from __future__ import annotations

import io
import json
import shutil
from collections import Counter
from pathlib import Path

import datasets
import pytest
from PIL import Image

from evals.config import BenchmarkRef
from evals.tasks import BENCHMARKS, get_benchmark
from rapid_agent.answers import grade
from rapid_agent.errors import ConfigError, InputError

FIXTURES = Path(__file__).parent / "fixtures" / "evals"


def load(name: str, split: str | None = None, path: Path | None = None):
    return get_benchmark(name).load(split, path or FIXTURES / name)


def right(sample, prediction: str) -> bool:
    """The library's verdict on an extracted answer, against every accepted gold of the sample."""
    return any(grade(prediction, gold, **sample.grading()).correct for gold in (sample.answer, *sample.alt_answers))


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
    assert right(mc, "B") and right(mc, "4")
    assert not right(mc, "A")
    assert samples["2"].answer_type == "integer" and samples["2"].options is None
    flt = samples["3"]
    assert (flt.answer_type, flt.precision, flt.unit) == ("float", 2, "cm")
    assert right(flt, "1.2501 cm") and not right(flt, "1.3")
    assert samples["4"].answer_type == "list" and right(samples["4"], "1, 2")
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
    assert right(samples["1"], "A") and not right(samples["1"], "B")
    free = samples["7"]
    assert free.answer_type == "auto" and free.options is None and right(free, "4\\pi")
    # a version split keeps only that version
    assert [s.id for s in load("mathverse", "vision_only")] == ["6", "8"]


def test_mathverse_choices_in_the_question_map_an_answer_text_to_its_letter():
    text_dominant = by_id(load("mathverse"))["1"]
    assert text_dominant.question.endswith("Choices:\nA:5\nB:6\nC:7\nD:8")  # the prompt keeps the benchmark's text
    assert text_dominant.options == ("5", "6", "7", "8") and text_dominant.options_in_question
    assert text_dominant.prompt_options is None  # shown once, in the question, not again as a list
    assert right(text_dominant, "5") and right(text_dominant, "A") and not right(text_dominant, "6")


def test_mathvision_letter_or_option_text_and_free_form():
    samples = by_id(load("mathvision", "testmini"))
    mc = samples["1"]
    assert mc.options == ("A", "B", "C", "D", "E") and mc.answer == "C"
    assert isinstance(mc.images[0], bytes)  # decoded_image embedded in the parquet
    assert right(mc, "C") and not right(mc, "D")
    free = samples["2"]
    assert free.options is None and right(free, "2\\sqrt{3}")
    assert right(free, "\\sqrt{12}")  # symbolic equality
    assert free.metadata["subject"] == "metric geometry - length"


def test_mmmu_string_options_image_tags_and_list_answers():
    samples = by_id(load("mmmu"))
    assert set(samples) == {"validation_Art_1", "validation_Math_1", "validation_Math_2"}  # nested subject folders
    mc = samples["validation_Math_1"]
    # options were a string repr; the image-only option reads as text; images 1-3 are the tagged ones
    assert mc.options == ("The first", "The second", "(image 3)")
    assert len(mc.images) == 3 and len({bytes(i) for i in mc.images}) == 3
    assert mc.metadata == {"subject": "Math", "domain": "Science"}
    assert right(mc, "C")
    open_q = samples["validation_Math_2"]
    assert open_q.answer == "24" and open_q.alt_answers == ("24.0",) and open_q.options is None
    assert right(open_q, "24") and not right(open_q, "25")
    assert samples["validation_Art_1"].metadata["domain"] == "Art and Design"


def test_mmstar_inline_options_and_categories():
    samples = load("mmstar")
    assert [s.id for s in samples] == ["0", "1", "2"]
    assert all("Options: A:" in s.question and s.options_in_question and s.prompt_options is None for s in samples)
    assert samples[0].options == ("red", "green", "blue", "black")
    assert [s.metadata["category"] for s in samples] == ["coarse perception", "math", "instance reasoning"]
    assert right(samples[0], "(C)") and not right(samples[0], "A")
    # an answer written as the option's text maps to its letter
    assert right(samples[0], "blue") and not right(samples[0], "red") and right(samples[1], "2")


def test_wemath_image_path_column_and_composite_keys():
    samples = load("wemath")
    assert [s.id for s in samples] == [
        "1/2steps_1", "1/2steps_2", "1/2steps_multi", "2/3steps_1", "2/3steps_2", "2/3steps_3", "2/3steps_multi",
    ]
    first = samples[0]
    assert first.question.endswith("\nA. 6; B. 8; C. 12; D. 24")  # question + "\n" + option
    assert first.options == ("6", "8", "12", "24") and first.prompt_options is None
    assert first.answer == "A" and right(first, "6") and not right(first, "8")
    assert decoded(first.images[0]).size == (24, 24)  # the PIL image stored under `image_path`
    assert first.metadata["problem"] == "1" and first.metadata["key"] == "2steps_1"


def test_logicvista_multi_letter_answers_compare_as_sets():
    sample = by_id(load("logicvista"))["1"]
    assert sample.answer == "A, C" and sample.metadata["skill"] == "inductive"
    assert right(sample, "C, A") and right(sample, "A and C")
    assert not right(sample, "A") and not right(sample, "A, B, C")


def test_logicvista_options_in_both_printed_layouts_and_only_in_the_image():
    samples = by_id(load("logicvista"))
    assert samples["1"].options is None  # "(A-D)": the options are drawn in the image
    assert samples["2"].options == ("8", "9", "10", "11") and right(samples["2"], "11") and not right(samples["2"], "8")
    assert samples["3"].options == ("10", "12", "14", "16") and right(samples["3"], "14")
    assert samples["4"].options is None  # "(A) (B) (C) (D)": labels without texts
    assert all(s.prompt_options is None for s in samples.values())


@pytest.mark.parametrize(("text", "layout", "gold", "expected"), [
    ("Find AC.\nChoices:\nA:2\\sqrt{3}\nB:\\frac{5}{2}\nC:4", "MATHVERSE", "B", ("2\\sqrt{3}", "\\frac{5}{2}", "4")),
    ("Is it red?\nOptions: A: Yes, it is, B: No", "MMSTAR", "A", ("Yes, it is", "No")),
    ("A. 1cm；B. 2cm；C. No correct answer", "WEMATH", "C", ("1cm", "2cm", "No correct answer")),
    ("Select from A, B, C, D and E. (A) 3,690 (B) 18,250 (C) 18,450 (D)9,230(E)36,900", "LOGICVISTA", "C",
     ("3,690", "18,250", "18,450", "9,230", "36,900")),
    ("Which hammer cools fastest? (A) Wood in water, (B) Steel in air, (C) There would be no difference", "LOGICVISTA",
     "A", ("Wood in water", "Steel in air", "There would be no difference")),
    ("(A) True (B)False", "LOGICVISTA", "C", None),  # the gold is not among the options: the parse is not trusted
    ("Which is the correct answer? Select from 1-5", "LOGICVISTA", "3", None),
    ("Options: A: only one", "MMSTAR", "A", None),
])
def test_embedded_option_layouts(text, layout, gold, expected):
    from evals.tasks import options

    assert options.embedded_options(text, getattr(options, layout), gold) == expected


def _without_column(tmp_path: Path, column: str, name: str = "test.parquet", source: Path | None = None) -> Path:
    table = datasets.load_dataset("parquet", data_files=str(source or FIXTURES / "logicvista" / "test.parquet"),
                                  split="train")
    folder = tmp_path / column
    folder.mkdir()
    table.remove_columns(column).to_parquet(str(folder / name))
    return folder


def test_logicvista_copy_without_ids_gets_stable_content_keys(tmp_path):
    keyed = [s.id for s in get_benchmark("logicvista").load(path=_without_column(tmp_path, "id"))]
    assert len(set(keyed)) == 4 and all(k.startswith("sha256-") for k in keyed)
    table = datasets.load_dataset("parquet", data_files=str(FIXTURES / "logicvista" / "test.parquet"), split="train")
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    table.remove_columns("id").select([3, 1, 0, 2]).to_parquet(str(shuffled / "test.parquet"))
    again = {s.question: s.id for s in get_benchmark("logicvista").load(path=shuffled)}
    first = {s.question: s.id for s in get_benchmark("logicvista").load(path=tmp_path / "id")}
    assert again == first  # the key follows the content, not the row's position
    # the GitHub release names each item by its image: v1_0.png is item v1_0
    named = table.remove_columns("id").add_column("imagename", [f"v1_{i}.png" for i in range(4)])
    (tmp_path / "named").mkdir()
    named.to_parquet(str(tmp_path / "named" / "test.parquet"))
    assert [s.id for s in get_benchmark("logicvista").load(path=tmp_path / "named")] == ["v1_0", "v1_1", "v1_2", "v1_3"]


@pytest.mark.parametrize("name", ["mmstar.parquet", "MMStar.parquet", "mmstar_val.parquet", "data/mmstar-val.parquet",
                                  "data/train-00000-of-00001.parquet"])
def test_a_folder_with_the_benchmark_file_under_another_name_loads_and_says_which(tmp_path, name, caplog):
    target = tmp_path / "copy" / name
    target.parent.mkdir(parents=True)
    shutil.copy(FIXTURES / "mmstar" / "val.parquet", target)
    (tmp_path / "copy" / "dataset_infos.json").write_text("{}")  # Hub metadata beside the rows is not a data file
    with caplog.at_level("WARNING", logger="evals.tasks.base"):
        assert [s.id for s in get_benchmark("mmstar").load(path=tmp_path / "copy")] == ["0", "1", "2"]
    assert str(target) in caplog.text and "no val.parquet" in caplog.text


def test_an_unknown_layout_lists_the_files_found_and_the_patterns_tried(tmp_path):
    for name in ("first.parquet", "nested/second.jsonl"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(FIXTURES / "mmstar" / "val.parquet", tmp_path / name)
    with pytest.raises(InputError) as info:
        get_benchmark("mmstar").load(path=tmp_path)
    message = str(info.value)
    assert "no data file for split 'val'" in message
    assert "tried: val.parquet, val-*.parquet" in message and "mmstar_val.parquet" in message
    assert "mmstar.parquet" in message and "the folder's only data file" in message
    assert "found: first.parquet, nested/second.jsonl" in message


def test_one_file_never_stands_in_for_each_of_dynamaths_variants(tmp_path):
    shutil.copy(FIXTURES / "dynamath" / "data" / "sample_variant1-00000-of-00001.parquet", tmp_path / "dynamath.parquet")
    with pytest.raises(InputError, match=r"no data file for split 'sample_variant10'.*found: dynamath.parquet"):
        get_benchmark("dynamath").load(path=tmp_path)  # each variant would re-read the same rows


def test_dynamath_variants_seeds_and_float_tolerance():
    samples = load("dynamath")
    assert [s.id for s in samples] == ["1@v1", "1@v2", "2@v1", "2@v2", "3@v1", "3@v2"]  # seed-major order
    assert [s.metadata["variant"] for s in samples] == [1, 2] * 3
    flt = by_id(samples)["2@v2"]
    assert flt.answer_type == "float" and flt.tolerance == 1e-3
    assert right(flt, "-1.2504") and not right(flt, "-1.26")
    assert by_id(samples)["1@v1"].answer_type == "multiple_choice" and right(by_id(samples)["1@v1"], "B")
    assert [s.id for s in load("dynamath", "sample_variant2")] == ["1@v2", "2@v2", "3@v2"]


@pytest.mark.parametrize(("name", "key", "items_per_problem"), [
    ("mathverse", "problem", {"1": 6, "2": 2}),  # the versions of one problem_index
    ("dynamath", "seed", {"1": 2, "2": 2, "3": 2}),  # the variants of one seed question
    ("wemath", "problem", {"1": 3, "2": 4}),  # the parts and the composite question of one ID
    *[(name, None, None) for name in ("mathvista", "mathvision", "mmmu", "mmstar", "logicvista", "bundled", "miniworld")],
])
def test_benchmarks_repeating_a_problem_declare_its_cluster_key_and_samples_carry_it(name, key, items_per_problem):
    assert get_benchmark(name).cluster_by == key  # None: independent items (Wilson intervals, McNemar)
    if key is not None:
        assert Counter(s.metadata[key] for s in load(name)) == items_per_problem


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
        get_benchmark("mmstar").load(path=FIXTURES / "dynamath")
    assert BenchmarkRef.parse("mathverse:vision_only").label == "mathverse:vision_only"
    assert BenchmarkRef.parse("mathverse:testmini").label == "mathverse"
    assert {"bundled", "mathvista", "mathverse", "mathvision", "mmmu", "mmstar", "wemath", "logicvista", "dynamath"} <= set(
        BENCHMARKS
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
