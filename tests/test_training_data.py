"""Training data: demo set, local files, the ViRL39K Hub layout, bad rows, difficulty filtering."""

from __future__ import annotations

import io
import itertools
import json
import zipfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from trl import ModelConfig

from rapid_agent.errors import ImageInputError, InputError
from rapid_agent.prompts import get_preset
from rapid_agent.testing import ScriptedChatModel
from training.config import VPOConfig
from training.data import filter_by_difficulty, load_training_data
from training.reward import PoolReasoner


def _png(color: str, size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_demo_rows_are_trl_conversational_vlm_rows():
    dataset = load_training_data(VPOConfig(dataset_name="demo"))
    preset = get_preset("paper-train")
    row = dataset[1]
    assert set(dataset.column_names) == {"prompt", "images", "question", "options", "answer", "answer_type", "row_id"}
    system, user = row["prompt"]
    assert system == {"role": "system", "content": preset.caption_system}
    assert user["role"] == "user" and user["content"].startswith(f"Question: {row['question']}\nOptions:\nA. red")
    assert user["content"].endswith("DO NOT try to answer the question!")
    assert row["options"] == ["red", "green", "blue", "yellow"] and row["answer"] in "ABCD"
    image = row["images"][0]
    assert isinstance(image, Image.Image) and image.width * image.height >= 512 * 512  # the paper's resize
    assert dataset[0]["answer"].isdigit() and dataset[0]["options"] == []


def test_local_jsonl_with_image_folder(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(_png("red"))
    (tmp_path / "imgs" / "b.png").write_bytes(_png("blue"))
    data = _write_jsonl(
        tmp_path / "train.jsonl",
        [
            {"qid": "q1", "question": "<image>How many?", "answer": "\\boxed{3}", "image": ["imgs/a.png", "imgs/b.png"]},
            {"qid": "q2", "question": "Integrate x.", "answer": "x^2/2", "source": "DeepScaleR"},  # text-only, dropped
            {"qid": "q3", "question": "Which?", "options": ["cat", "dog"], "answer": "B", "image": "imgs/b.png",
             "answer_type": "multiple_choice"},
        ],
    )
    dataset = load_training_data(VPOConfig(dataset_name=str(data)))
    assert dataset["row_id"] == ["q1", "q3"]
    first = dataset[0]
    assert first["question"] == "How many?" and first["answer"] == "3" and len(first["images"]) == 2
    assert "<image>" not in first["prompt"][1]["content"]
    assert dataset[1]["answer_type"] == "multiple_choice" and dataset[1]["options"] == ["cat", "dog"]
    assert len(load_training_data(VPOConfig(dataset_name=str(data), max_samples=1))) == 1


def test_local_parquet_with_embedded_images(tmp_path):
    table = pa.table(
        {
            "question": ["What colour?"],
            "answer": ["red"],
            "images": [[{"bytes": _png("red"), "path": None}]],
        }
    )
    pq.write_table(table, tmp_path / "rows.parquet")
    row = load_training_data(VPOConfig(dataset_name=str(tmp_path / "rows.parquet")))[0]
    assert row["answer"] == "red" and row["images"][0].getpixel((0, 0)) == (255, 0, 0)


def test_virl39k_layout_from_the_hub(tmp_path, monkeypatch):
    """The Hub path: top-level parquet with relative image paths into images.zip, extracted once."""
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    with zipfile.ZipFile(snapshot / "images.zip", "w") as archive:
        archive.writestr("images/q1-0.jpg", _png("green"))
    pq.write_table(
        pa.table(
            {
                "question": ["<image>What is shown?\nA. cat\nB. tree", "Solve x+1=2."],
                "answer": ["\\boxed{B}", "\\boxed{1}"],
                "image": [["images/q1-0.jpg"], []],
                "source": ["MMK12", "DeepScaleR"],
                "qid": ["q1", "q2"],
            }
        ),
        snapshot / "39Krelease.parquet",
    )
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs["repo_type"]))
        return str(snapshot)

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_snapshot_download)
    dataset = load_training_data(VPOConfig(dataset_name="TIGER-Lab/ViRL39K"))
    assert calls == [("TIGER-Lab/ViRL39K", "dataset")]
    assert dataset["row_id"] == ["q1"] and dataset[0]["answer"] == "B"
    assert dataset[0]["question"] == "What is shown?\nA. cat\nB. tree"
    assert (snapshot / "images" / "q1-0.jpg").is_file()


@pytest.mark.parametrize(
    ("row", "error", "message"),
    [
        ({"qid": "x7", "question": "How many?", "image": "a.png"}, InputError, r"row 1 \(id x7\).*no gold answer"),
        ({"qid": "x7", "question": "How many?", "answer": "3"}, InputError, r"row 1 \(id x7\).*no image"),
        ({"qid": "x7", "question": "How many?", "answer": "3", "image": "missing.png"}, ImageInputError,
         r"row 1 \(id x7\).*image file not found: .*missing.png"),
        ({"qid": "x7", "question": " ", "answer": "3", "image": "a.png"}, InputError, r"row 1 \(id x7\).*no question"),
        ({"qid": "x7", "question": "Q?", "answer": "3", "image": "a.png", "answer_type": "numeric"}, InputError,
         r"row 1 \(id x7\).*unknown answer_type 'numeric'"),
    ],
)
def test_bad_rows_are_named(tmp_path, row, error, message):
    (tmp_path / "a.png").write_bytes(_png("red"))
    good = {"qid": "ok", "question": "Q?", "answer": "1", "image": "a.png"}
    data = _write_jsonl(tmp_path / "train.jsonl", [good, row])
    with pytest.raises(error, match=message):
        load_training_data(VPOConfig(dataset_name=str(data)))


def test_missing_dataset_file_is_named(tmp_path):
    with pytest.raises(Exception, match="dataset file not found"):
        load_training_data(VPOConfig(dataset_name=str(tmp_path / "nope.jsonl")))


def test_difficulty_filter_drops_always_and_never_solved_rows_and_caches(tmp_path, tiny_captioner_path):
    (tmp_path / "a.png").write_bytes(_png("red"))
    rows = [{"qid": name, "question": f"{name}: how many?", "answer": "7", "image": "a.png"} for name in
            ("always", "never", "mixed")]
    data = _write_jsonl(tmp_path / "train.jsonl", rows)
    mixed = itertools.count()

    def respond(messages):
        prompt = messages[-1].text
        if "always:" in prompt:
            return "\\boxed{7}"
        if "never:" in prompt:
            return "\\boxed{0}"
        return "\\boxed{7}" if next(mixed) % 2 else "\\boxed{1}"

    reasoner = ScriptedChatModel(respond=respond)
    config = VPOConfig(dataset_name=str(data), difficulty_filter=True, filter_samples=4, max_completion_length=8,
                       output_dir=str(tmp_path / "run"))
    policy, pool = ModelConfig(model_name_or_path=str(tiny_captioner_path)), [PoolReasoner("scripted", reasoner)]
    dataset = load_training_data(config)
    kept = filter_by_difficulty(dataset, config, policy, pool)
    assert kept["row_id"] == ["mixed"]
    assert len(reasoner.calls) == 12
    cached = [json.loads(line) for line in (tmp_path / "run" / "pass_rates.jsonl").read_text().splitlines()]
    assert {c["row_id"]: c["pass_rate"] for c in cached} == {"always": 1.0, "never": 0.0, "mixed": 0.5}
    assert filter_by_difficulty(dataset, config, policy, pool)["row_id"] == ["mixed"]
    assert len(reasoner.calls) == 12  # the second pass read the cache
