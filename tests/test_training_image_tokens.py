"""`training.image_checks`: prompts carry each image once, and the processor's image tokens match its grids.

Run on the tiny Qwen2.5-VL captioner's processor (no model forward): rows with one and two images pass;
a prompt whose image tokens were already expanded (TRL issue #6294's double expansion) and a processor
that drops an image's grid row (TRL issue #4488's class) are refused, and so are rollout batches with
lost grid rows, wrong `num_images` or doubled image tokens.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image

from rapid_agent.errors import ConfigError
from rapid_agent.miniworld import world
from training.image_checks import (
    _pick_rows,
    _runs,
    check_image_tokens,
    check_rollout_batch,
    image_counts,
)

SYSTEM = "You are given images and a relevant question. Describe the images in detail."


@pytest.fixture(scope="module")
def processor(tiny_captioner_path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_captioner_path)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _row(row_id: str, user: str, images: list[bytes]) -> dict:
    return {
        "prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}],
        "images": [{"bytes": data, "path": None} for data in images],
        "question": user,
        "options": [],
        "answer": "1",
        "answer_type": "auto",
        "row_id": row_id,
    }


def _dataset(rows: list[dict]):
    from datasets import Dataset

    from training.data import FEATURES, with_image_loading

    return with_image_loading(Dataset.from_list(rows, features=FEATURES))


@pytest.fixture(scope="module")
def rows():
    chart = world.png(next(iter(world.tasks("train", 1, seed=3))).scene)
    plain = _png(Image.new("RGB", (60, 200), "red"))
    return [
        _row("one", "Question: how tall is bar A?\nPlease describe the image.", [chart]),
        _row(
            "two",
            "Question: which picture is red?\nPlease describe the first image (a chart) and the second image.",
            [chart, plain],
        ),
    ]


def test_rows_with_one_and_two_images_pass(processor, rows):
    dataset = _dataset(rows)
    assert image_counts(dataset) == [1, 2]
    assert image_counts(dataset.select([1, 0])) == [2, 1]
    assert image_counts(rows) == [1, 2]
    check_image_tokens(processor, dataset)
    check_image_tokens(processor, _dataset([rows[1]]), max_rows=1)


def test_the_row_with_most_images_is_checked():
    assert _pick_rows([1, 1, 1, 3, 2, 1], 2) == [0, 3]
    assert _pick_rows([1, 1, 1], 2) == [0, 1]
    assert _pick_rows([0, 2, 2], 1) == [1]
    assert _pick_rows([0, 0], 4) == []
    assert _runs([1, 5, 5, 2, 5, 3, 5, 5, 5], 5) == [2, 1, 3]


def test_an_already_expanded_prompt_is_refused(processor, rows):
    # the double expansion: the row's text already holds the processor's expansion of one image
    expanded = "<|vision_start|>" + "<|image_pad|>" * 12 + "<|vision_end|>"
    row = dict(rows[0], row_id="expanded")
    row["prompt"] = [row["prompt"][0], {"role": "user", "content": expanded + row["prompt"][1]["content"]}]
    with pytest.raises(ConfigError, match=r"id expanded.*13 image tokens.*1 image.*issues/6294"):
        check_image_tokens(processor, _dataset([rows[0], row]))
    # a stray placeholder in a two-image row: three placeholders for two images
    row = dict(rows[1], row_id="stray")
    row["prompt"] = [
        row["prompt"][0],
        {"role": "user", "content": "see <|image_pad|> " + row["prompt"][1]["content"]},
    ]
    with pytest.raises(ConfigError, match=r"id stray.*3 image tokens.*2 image"):
        check_image_tokens(processor, _dataset([row]))


def test_a_processor_dropping_an_image_grid_is_refused(processor, rows, monkeypatch):
    render = type(processor).apply_chat_template

    def dropping(self, *args, **kwargs):  # the tokenized prompt loses its last image's grid row
        out = render(self, *args, **kwargs)
        if not isinstance(out, str) and not isinstance(out, list):
            out["image_grid_thw"] = out["image_grid_thw"][:-1]
        return out

    monkeypatch.setattr(type(processor), "apply_chat_template", dropping)
    with pytest.raises(ConfigError, match=r"id two.*1 image_grid_thw rows for 2 image.*issues/4488"):
        check_image_tokens(processor, _dataset([rows[1]]))


def test_a_processor_expanding_twice_is_refused(processor, rows, monkeypatch):
    render = type(processor).apply_chat_template

    def doubling(self, *args, **kwargs):  # the first image's tokens expanded a second time
        out = render(self, *args, **kwargs)
        if not isinstance(out, str) and not isinstance(out, list):
            import torch

            ids = out["input_ids"][0]
            first = int((ids == self.image_token_id).nonzero()[0])
            out["input_ids"] = torch.cat(
                [ids[:first], ids[first : first + 1].repeat(5), ids[first:]]
            ).unsqueeze(0)
        return out

    monkeypatch.setattr(type(processor), "apply_chat_template", doubling)
    with pytest.raises(ConfigError, match=r"image-token runs of lengths.*expanded twice"):
        check_image_tokens(processor, _dataset(rows))


def test_processors_without_image_tokens_are_skipped(caplog):
    class TextOnly:
        def apply_chat_template(self, *args, **kwargs):  # pragma: no cover - never reached
            raise AssertionError

    with caplog.at_level("INFO", logger="training.image_checks"):
        check_image_tokens(TextOnly(), [{"prompt": [], "images": [object()]}])
    assert "skipped" in caplog.text


def _rollout(processor, rows):
    """A rollout batch shaped as GRPOTrainer._generate_and_score_completions returns it (prompt side only)."""
    from trl.data_utils import apply_chat_template, prepare_multimodal_messages

    dataset = _dataset(rows)
    images = [dataset[i]["images"] for i in range(len(rows))]
    texts = [
        apply_chat_template({"prompt": prepare_multimodal_messages(row["prompt"], images=imgs)}, processor)[
            "prompt"
        ]
        for row, imgs in zip(rows, images, strict=True)
    ]
    batch = processor(images=images, text=texts, padding=True, padding_side="left", return_tensors="pt")
    return {
        "prompt_ids": batch["input_ids"],
        "prompt_mask": batch["attention_mask"],
        "pixel_values": batch["pixel_values"],
        "image_grid_thw": batch["image_grid_thw"],
        "mm_token_type_ids": batch["mm_token_type_ids"],
        "num_images": [len(imgs) for imgs in images],
    }


def test_rollout_batches_keep_one_grid_row_per_image(processor, rows):
    import torch

    batch = _rollout(processor, [rows[1], rows[0], rows[1]])
    check_rollout_batch(batch, [2, 1, 2], processor=processor)
    check_rollout_batch(batch, processor=processor)
    check_rollout_batch(batch, [2, 1, 2])  # without the processor: grid rows and pixels only

    lost = dict(batch, image_grid_thw=batch["image_grid_thw"][[0, 2, 3]], num_images=[1, 1, 1])
    with pytest.raises(
        ConfigError, match=r"num_images \[1, 1, 1\] for samples with \[2, 1, 2\].*issues/4488"
    ):
        check_rollout_batch(lost, [2, 1, 2], processor=processor)
    with pytest.raises(ConfigError, match=r"3 image_grid_thw rows for 5 images.*issues/4488"):
        check_rollout_batch(dict(batch, image_grid_thw=batch["image_grid_thw"][:3]), processor=processor)
    with pytest.raises(ConfigError, match="no image_grid_thw for 5 images"):
        check_rollout_batch({k: v for k, v in batch.items() if k != "image_grid_thw"}, processor=processor)
    with pytest.raises(ConfigError, match="pixel_values rows"):
        check_rollout_batch(dict(batch, pixel_values=batch["pixel_values"][:-4]), processor=processor)
    # grids of two samples swapped (a chart's and a taller picture's): the image tokens no longer match
    swapped = dict(batch, image_grid_thw=batch["image_grid_thw"][[0, 2, 1, 3, 4]])
    assert swapped["image_grid_thw"].tolist() != batch["image_grid_thw"].tolist()
    with pytest.raises(ConfigError, match="image tokens per sample"):
        check_rollout_batch(swapped, processor=processor)
    # an image token where a text token was: the prompt holds more image tokens than its grids
    ids = batch["prompt_ids"].clone()
    ids[1, -2] = processor.image_token_id
    with pytest.raises(ConfigError, match="expanded twice"):
        check_rollout_batch(dict(batch, prompt_ids=ids), processor=processor)
    mm = batch["mm_token_type_ids"].clone()
    mm[0] = 0
    with pytest.raises(ConfigError, match="mm_token_type_ids"):
        check_rollout_batch(dict(batch, mm_token_type_ids=mm), processor=processor)
    # image marks shifted off the image tokens (TRL #5785's padding-side mismatch)
    with pytest.raises(ConfigError, match="other positions.*issues/5785"):
        check_rollout_batch(
            dict(batch, mm_token_type_ids=batch["mm_token_type_ids"].roll(1, dims=1)), processor=processor
        )
    # no images at all: nothing to check
    check_rollout_batch({"prompt_ids": torch.zeros(2, 3, dtype=torch.long)}, [0, 0], processor=processor)
