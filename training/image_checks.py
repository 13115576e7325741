"""Checks that the captioner's prompts carry their images as the processor and TRL's GRPO expect.

TRL's VLM GRPO has had two classes of silent image-token bugs, each of which trains the policy on
other inputs than the ones it is scored or sampled with:

* **Image tokens expanded twice.** TRL renders the chat template with one placeholder per image
  (for Qwen2.5-VL `<|vision_start|><|image_pad|><|vision_end|>`), the processor expands each
  placeholder into `prod(image_grid_thw[i]) // merge_size**2` image tokens, and those expanded IDs
  reach vLLM, which expands again where it does not recognise an applied expansion
  (https://github.com/huggingface/trl/issues/6294, open; fixes in review:
  https://github.com/huggingface/trl/pull/6718 and https://github.com/huggingface/trl/pull/6719).
  A prompt whose text already holds expanded image tokens is corrupted the same way by the
  processor itself, and vLLM's server mode (`VLLMGeneration._place_features`) needs exactly one run
  of image tokens per image.
* **`image_grid_thw` lost with several images.** The rollout batch keeps one grid row per image and
  `num_images` per sample; paths that split batches per sample instead of per image drop or misassign
  grid rows when a sample has several images (https://github.com/huggingface/trl/issues/4488,
  https://github.com/huggingface/trl/issues/3847, multi-image support in
  https://github.com/huggingface/trl/pull/4113).

`check_image_tokens` runs before training on a few dataset rows (one with several images when the
dataset has such rows), building each prompt exactly as TRL 1.x's `GRPOTrainer` does;
`check_rollout_batch` checks a rollout batch of `GRPOTrainer._generate_and_score_completions` (or a
per-step slice of it), including that `mm_token_type_ids` marks the prompt's image tokens
(https://github.com/huggingface/trl/issues/5785, a padding-side mismatch, fixed); `install_image_checks` does the first and hooks the second into a trainer.
The checks are generic over processors that expose `image_token`/`image_token_id` (and, for the
token counts, `image_grid_thw` with `image_processor.merge_size`); others are skipped with a log line.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from rapid_agent.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["check_image_tokens", "check_rollout_batch", "image_counts", "install_image_checks"]


def check_image_tokens(processor: Any, rows: Any, *, max_rows: int = 4) -> None:
    """Raise `ConfigError` unless a few of `rows` tokenize with exactly their images' image tokens.

    `rows`: a `datasets.Dataset` (or a list of dicts) of rows as `training.data` builds them (`prompt`:
    messages with text content, `images`: the row's images). Up to `max_rows` rows are checked: the first
    row with the most images when some row has several, then the first rows. For each:

    (a) the chat template's text (TRL's `prompts_text`, before the processor) holds one image
        placeholder per image, never an already expanded run;
    (b) the processor's tokenization (TRL's rollout `prompt_ids`, which go to vLLM) has one grid row per
        image and, per image, one run of `prod(image_grid_thw[i]) // merge_size**2` image tokens;
    (c) TRL's second processor call (text + images: the forward pass's `pixel_values`, `image_grid_thw`,
        `mm_token_type_ids`) gives the same token IDs and grids as (b).
    """
    image_token = getattr(processor, "image_token", None)
    image_token_id = getattr(processor, "image_token_id", None)
    if (
        not isinstance(image_token, str)
        or not isinstance(image_token_id, int)
        or not hasattr(processor, "apply_chat_template")
    ):
        log.info("image-token check skipped: %s has no image_token/image_token_id", type(processor).__name__)
        return
    counts = image_counts(rows)
    picks = _pick_rows(counts, max_rows)
    for index in picks:
        _check_row(processor, rows[index], index, image_token, image_token_id)
    if picks:
        log.info(
            "image-token check: %d rows (up to %d images each) tokenize with their images' tokens",
            len(picks),
            max(counts[i] for i in picks),
        )


def image_counts(rows: Any) -> list[int]:
    """The number of images of each row, without decoding any image."""
    try:
        from datasets import Dataset
    except ImportError:  # pragma: no cover - datasets is a training dependency
        Dataset = ()  # noqa: N806
    if isinstance(rows, Dataset):
        if "images" not in rows.column_names:
            return [0] * len(rows)
        import pyarrow.compute as pc

        counts: list[int] = []
        # the arrow format drops `with_image_loading`'s transform: list lengths come from the offsets
        for batch in rows.with_format("arrow").select_columns(["images"]).iter(batch_size=4096):
            counts.extend(pc.list_value_length(batch["images"]).fill_null(0).to_pylist())
        return counts
    return [len(row.get("images") or []) for row in rows]


def _pick_rows(counts: Sequence[int], max_rows: int) -> list[int]:
    with_images = [i for i, n in enumerate(counts) if n > 0]
    if not with_images or max_rows < 1:
        return []
    most = max(with_images, key=lambda i: (counts[i], -i))
    picks = [most] if counts[most] > 1 else []
    picks += [i for i in with_images if i not in picks][: max_rows - len(picks)]
    return sorted(picks)


def _check_row(
    processor: Any, row: Mapping[str, Any], index: int, image_token: str, image_token_id: int
) -> None:
    from trl.data_utils import apply_chat_template, prepare_multimodal_messages

    images = list(row.get("images") or [])
    name = f"training row {index} (id {row.get('row_id', '?')})"
    # what GRPOTrainer._generate_and_score_completions builds from a row
    messages = prepare_multimodal_messages(copy.deepcopy(list(row["prompt"])), images=images)

    # (a) the template's text: one placeholder per image
    text = apply_chat_template({"prompt": messages}, processor)["prompt"]
    in_text = text.count(image_token)
    if in_text == 0:
        log.info(
            "image-token check: %s's chat template marks images without %r; placeholder count not checked",
            type(processor).__name__,
            image_token,
        )
    elif in_text != len(images):
        raise ConfigError(
            f"{name}: its prompt text holds {in_text} image tokens {image_token!r} for {len(images)} image(s); "
            "each image must appear exactly once, as an unexpanded placeholder. Image tokens already expanded in "
            "the text (or stray ones in the question) are expanded again by the processor and by vLLM, and the "
            "features land on the wrong tokens (https://github.com/huggingface/trl/issues/6294)"
        )

    # (b) TRL's rollout tokenization (GRPOTrainer._tokenize_prompts): the prompt_ids vLLM and the forward get
    rollout = processor.apply_chat_template(
        [messages], add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    grid = rollout.get("image_grid_thw")
    if grid is None:
        log.info(
            "image-token check: %s returns no image_grid_thw; image token counts not checked",
            type(processor).__name__,
        )
        return
    if grid.shape[0] != len(images):
        raise ConfigError(
            f"{name}: the processor returned {grid.shape[0]} image_grid_thw rows for {len(images)} image(s); "
            "one row per image is needed (https://github.com/huggingface/trl/issues/4488)"
        )
    merge_size = getattr(getattr(processor, "image_processor", None), "merge_size", None)
    if not isinstance(merge_size, int):
        log.info(
            "image-token check: %s's image processor has no merge_size; image token counts not checked",
            type(processor).__name__,
        )
        return
    per_image = [int(n) // merge_size**2 for n in grid.prod(-1).tolist()]
    ids = rollout["input_ids"][0].tolist()
    runs = _runs(ids, image_token_id)
    if runs != per_image:
        raise ConfigError(
            f"{name}: the processor's prompt holds image-token runs of lengths {runs} (total {sum(runs)}), but "
            f"its image_grid_thw {grid.tolist()} with merge_size {merge_size} needs one run per image of lengths "
            f"{per_image} (total {sum(per_image)}): image tokens expanded twice or lost "
            "(https://github.com/huggingface/trl/issues/6294)"
        )

    # (c) TRL's forward-pass inputs come from a second processor call on the text and images
    forward = processor(images=[images], text=[text], return_tensors="pt")
    if forward["input_ids"][0].tolist() != ids or forward["image_grid_thw"].tolist() != grid.tolist():
        raise ConfigError(
            f"{name}: the processor gives other token IDs or image grids for the rendered text "
            f"({len(forward['input_ids'][0])} tokens, grids {forward['image_grid_thw'].tolist()}) than for the "
            f"messages ({len(ids)} tokens, grids {grid.tolist()}): GRPO's forward pass would misplace the images"
        )
    mm = forward.get("mm_token_type_ids")
    if mm is not None and int((mm[0] == 1).sum()) != sum(per_image):
        raise ConfigError(
            f"{name}: mm_token_type_ids marks {int((mm[0] == 1).sum())} image tokens, the grids need {sum(per_image)}"
        )


def _runs(ids: Sequence[int], token_id: int) -> list[int]:
    """Lengths of the maximal runs of `token_id` in `ids`, in order."""
    runs: list[int] = []
    previous = None
    for token in ids:
        if token == token_id:
            if previous == token_id:
                runs[-1] += 1
            else:
                runs.append(1)
        previous = token
    return runs


def check_rollout_batch(
    inputs: Mapping[str, Any], num_images: Sequence[int] | None = None, *, processor: Any = None
) -> None:
    """Raise `ConfigError` unless a GRPO rollout batch keeps one image grid row (and its pixels) per image.

    `inputs`: the dict `GRPOTrainer._generate_and_score_completions` returns (or a per-step slice that
    `GRPOTrainer._prepare_inputs` returns). `num_images`: the images of each sample, as the dataset rows
    hold them; None checks the batch against its own `num_images`. With `processor` (image token ID,
    `image_processor.merge_size`), the image tokens of each sample's prompt must also match its grids.
    """
    got = inputs.get("num_images")
    if num_images is not None:
        num_images = [int(n) for n in num_images]
        if sum(num_images) == 0:
            return
        if got is None or [int(n) for n in got] != num_images:
            raise ConfigError(
                f"the rollout batch has num_images {got} for samples with {num_images} images: TRL lost track "
                "of the images per sample (https://github.com/huggingface/trl/issues/4488)"
            )
    counts = num_images if num_images is not None else ([int(n) for n in got] if got is not None else None)
    if not counts or sum(counts) == 0:
        return
    grid = inputs.get("image_grid_thw")
    merge_size = getattr(getattr(processor, "image_processor", None), "merge_size", None)
    if grid is None:
        if isinstance(merge_size, int):  # a grid-based processor: the grid rows were dropped
            raise ConfigError(
                f"the rollout batch has no image_grid_thw for {sum(counts)} images "
                "(https://github.com/huggingface/trl/issues/4488)"
            )
        return
    if grid.shape[0] != sum(counts):
        raise ConfigError(
            f"the rollout batch has {grid.shape[0]} image_grid_thw rows for {sum(counts)} images (per sample "
            f"{counts}): image grids lost or duplicated with several images per sample "
            "(https://github.com/huggingface/trl/issues/4488)"
        )
    pixel_values = inputs.get("pixel_values")
    patches = int(grid.prod(-1).sum())
    if pixel_values is not None and hasattr(pixel_values, "shape") and pixel_values.shape[0] != patches:
        raise ConfigError(
            f"the rollout batch has {pixel_values.shape[0]} pixel_values rows, its image grids need {patches}"
        )
    image_token_id = getattr(processor, "image_token_id", None)
    if not isinstance(merge_size, int) or not isinstance(image_token_id, int) or "prompt_ids" not in inputs:
        return
    import torch

    per_image = grid.prod(-1) // merge_size**2
    needed = [int(part.sum()) for part in torch.split(per_image, counts)]
    prompt_ids = inputs["prompt_ids"]
    mask = inputs.get("prompt_mask")
    is_image = prompt_ids == image_token_id
    if mask is not None:
        is_image = is_image & mask.bool()
    found = is_image.sum(-1).tolist()
    if found != needed:
        raise ConfigError(
            f"the rollout prompts hold {found} image tokens per sample, their image grids need {needed}: "
            "image tokens expanded twice or grids misassigned (https://github.com/huggingface/trl/issues/6294, "
            "https://github.com/huggingface/trl/issues/4488)"
        )
    mm = inputs.get("mm_token_type_ids")
    if mm is None:
        return
    if (marked := (mm == 1).sum(-1).tolist()) != needed:
        raise ConfigError(
            f"the rollout's mm_token_type_ids mark {marked} image tokens per sample, the grids need {needed}"
        )
    width = prompt_ids.size(1)
    if mm.size(1) >= width and not torch.equal(mm[:, :width] == 1, is_image):
        raise ConfigError(
            "the rollout's mm_token_type_ids mark other positions than the prompts' image tokens: 3-D positions "
            "would be computed for the wrong tokens (https://github.com/huggingface/trl/issues/5785)"
        )


def install_image_checks(trainer: Any, rows: Any, *, max_rows: int = 4) -> Any:
    """Run `check_image_tokens` on `rows` with the trainer's processor, and check each rollout batch.

    Wraps the trainer's `_generate_and_score_completions` (each rollout against its rows' image counts)
    and `_prepare_inputs` (each per-step slice against itself) with `check_rollout_batch`; returns `trainer`.
    """
    processor = trainer.processing_class
    check_image_tokens(processor, rows, max_rows=max_rows)
    generate = trainer._generate_and_score_completions
    prepare = trainer._prepare_inputs

    @functools.wraps(generate)
    def generate_and_check(inputs, *args, **kwargs):
        output = generate(inputs, *args, **kwargs)
        counts = [len(x.get("images") or []) for x in inputs] if any("images" in x for x in inputs) else None
        check_rollout_batch(output, counts, processor=processor)
        return output

    @functools.wraps(prepare)
    def prepare_and_check(generation_batch, *args, **kwargs):
        inputs = prepare(generation_batch, *args, **kwargs)
        check_rollout_batch(inputs, processor=processor)
        return inputs

    trainer._generate_and_score_completions = generate_and_check
    trainer._prepare_inputs = prepare_and_check
    return trainer
