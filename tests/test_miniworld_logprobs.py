"""The captioner's training paths (TRL's SFT collator and GRPO) score tokens exactly as a direct forward does.

Qwen2.5-VL computes its 3-D (mrope) positions only when `mm_token_type_ids` reaches the model; a
training path that drops or misaligns it trains with other positions than `generate()` uses. These
tests compare per-token log-probs of each training path with a direct, unpadded forward of the
processor's own inputs, and check that the comparison is sensitive to the trap (1-D positions differ).
The GRPO comparison also runs on rows with two images each (a chart and a plain picture of another
size), through TRL's per-sample chunking and its generation-batch split: the classes of TRL's VLM
GRPO bugs that lose or misassign `image_grid_thw` rows with several images per sample
(https://github.com/huggingface/trl/issues/4488) show here as other log-probs or as a
`training.image_checks` refusal.
"""

from __future__ import annotations

import io

import pytest
import torch

from rapid_agent.miniworld import world
from training.miniworld import sft

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def captioner(tiny_captioner_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(tiny_captioner_path, dtype=torch.float32).eval()
    return model, AutoProcessor.from_pretrained(tiny_captioner_path)


def _image(task: world.Task):
    from rapid_agent.images import ImagePolicy, load_images

    return load_images([world.png(task.scene)], ImagePolicy())[0]


def direct_logps(
    model,
    processor,
    task: world.Task,
    completion_ids: list[int],
    *,
    positions: bool = True,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Log-probs of `completion_ids` after the graph's captioning prompt, one unpadded sequence."""
    return prompt_logps(
        model,
        processor,
        sft.caption_prompt(task),
        [_image(task)],
        completion_ids,
        positions=positions,
        temperature=temperature,
    )


def prompt_logps(
    model,
    processor,
    prompt: list[dict],
    images: list,
    completion_ids: list[int],
    *,
    positions: bool = True,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Log-probs of `completion_ids` after `prompt` with `images` (text messages), one unpadded sequence."""
    from trl.data_utils import prepare_multimodal_messages

    messages = prepare_multimodal_messages(prompt, images=images)
    inputs = processor.apply_chat_template(
        [messages], add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    completion = torch.tensor([completion_ids])
    input_ids = torch.cat([inputs["input_ids"], completion], dim=1)
    extra = {
        "mm_token_type_ids": torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(completion)], dim=1)
    }
    with torch.no_grad():
        logits = model(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            pixel_values=inputs["pixel_values"],
            image_grid_thw=inputs["image_grid_thw"],
            **(extra if positions else {}),
        ).logits
    logps = (logits[0, -len(completion_ids) - 1 : -1].float() / temperature).log_softmax(-1)
    return logps.gather(-1, completion[0].unsqueeze(-1)).squeeze(-1)


def test_sft_collator_matches_direct_forward(captioner):
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    model, processor = captioner
    tasks = list(world.tasks("train", 3, seed=5))
    rng = __import__("random").Random(0)
    examples = [  # different description lengths: the batch is padded on both sides
        {
            "prompt": sft.caption_prompt(t),
            "completion": [
                {
                    "role": "assistant",
                    "content": world.partial_description(t.scene, rng, full_probability=float(i == 0)),
                }
            ],
            "images": [_image(t)],
        }
        for i, t in enumerate(tasks)
    ]
    batch = DataCollatorForVisionLanguageModeling(processor, completion_only_loss=True)(examples)
    assert "mm_token_type_ids" in batch
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k not in ("labels", "completion_mask")}).logits
    logps = logits[:, :-1].float().log_softmax(-1)
    labels = batch["labels"][:, 1:]
    for row, task in enumerate(tasks):
        keep = labels[row] != -100
        ids = labels[row][keep]
        trained = logps[row][keep].gather(-1, ids.unsqueeze(-1)).squeeze(-1)
        reference = direct_logps(model, processor, task, ids.tolist())
        torch.testing.assert_close(trained, reference, atol=2e-4, rtol=1e-4)
        # the check is sensitive to the positions trap: 1-D positions give other log-probs
        assert (
            direct_logps(model, processor, task, ids.tolist(), positions=False) - reference
        ).abs().max() > 1e-3


def test_grpo_logprobs_match_direct_forward(tiny_captioner_path, tmp_path):
    config, rows, trainer = _grpo_trainer(tiny_captioner_path, tmp_path, "--max_completion_length", "8")
    batch = [rows[i] for i in range(2) for _ in range(2)]
    inputs = trainer._generate_and_score_completions(batch)
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
    with torch.no_grad():
        logps, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model,
            ids,
            mask,
            inputs["completion_ids"].size(1),
            pixel_values=inputs.get("pixel_values"),
            image_grid_thw=inputs.get("image_grid_thw"),
            num_images=inputs.get("num_images"),
            mm_token_type_ids=inputs.get("mm_token_type_ids"),
        )
    tasks = {t.id: t for t in world.tasks("train", 2, seed=config.seed)}
    model, processor = trainer.model.eval(), trainer.processing_class
    for row in range(len(batch)):
        keep = inputs["completion_mask"][row].bool()
        completion = inputs["completion_ids"][row][keep].tolist()
        # GRPO scores the sampling distribution: logits divided by the rollout temperature
        reference = direct_logps(
            model, processor, tasks[batch[row]["row_id"]], completion, temperature=config.temperature
        )
        torch.testing.assert_close(logps[row][keep], reference, atol=2e-4, rtol=1e-4)


def _two_image_rows(tasks: list[world.Task]):
    """Rows as `training.data` builds them, each with a chart and a plain picture of another size."""
    from datasets import Dataset
    from PIL import Image

    from rapid_agent.prompts import format_question, get_preset
    from training.data import FEATURES, with_image_loading

    preset = get_preset(sft.PRESET)
    rows = []
    for i, task in enumerate(tasks):
        plain = io.BytesIO()
        Image.new("RGB", (60 + 40 * i, 200 - 50 * i), ("red", "blue")[i % 2]).save(plain, format="PNG")
        user = (
            f"Question: {format_question(task.question, task.options)}\nThe first image is a bar chart, the second "
            "a plain picture. Please describe both images. DO NOT try to answer the question!"
        )
        rows.append(
            {
                "prompt": [
                    {"role": "system", "content": preset.caption_system},
                    {"role": "user", "content": user},
                ],
                "images": [
                    {"bytes": world.png(task.scene), "path": None},
                    {"bytes": plain.getvalue(), "path": None},
                ],
                "question": task.question,
                "options": list(task.options or []),
                "answer": task.answer,
                "answer_type": task.answer_type,
                "row_id": task.id,
            }
        )
    return with_image_loading(Dataset.from_list(rows, features=FEATURES))


def test_grpo_logprobs_match_direct_forward_with_two_images(tiny_captioner_path, tmp_path):
    """Two images per prompt: TRL's GRPO log-probs (whole batch, per-sample chunks, per-step slices) are the direct forward's."""
    from trl.data_utils import prepare_multimodal_messages

    from training.image_checks import check_rollout_batch

    config, rows, trainer = _grpo_trainer(tiny_captioner_path, tmp_path, "--steps_per_generation", "2",
                                          "--max_completion_length", "8", rows=_two_image_rows)
    model, processor = trainer.model, trainer.processing_class
    batch = [rows[i] for i in range(2) for _ in range(2)]

    def check_parity(inputs, row_of, chunk=None):
        ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
        mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        with torch.no_grad():
            logps, _, _ = trainer._get_per_token_logps_and_entropies(
                model.eval(),
                ids,
                mask,
                inputs["completion_ids"].size(1),
                batch_size=chunk,
                pixel_values=inputs.get("pixel_values"),
                image_grid_thw=inputs.get("image_grid_thw"),
                num_images=inputs.get("num_images"),
                mm_token_type_ids=inputs.get("mm_token_type_ids"),
            )
        for sample in range(ids.size(0)):
            row = rows[row_of(sample)]
            keep = inputs["completion_mask"][sample].bool()
            completion = inputs["completion_ids"][sample][keep].tolist()
            reference = prompt_logps(
                model, processor, row["prompt"], row["images"], completion, temperature=config.temperature
            )
            torch.testing.assert_close(logps[sample][keep], reference, atol=2e-4, rtol=1e-4)
            if sample == 0:  # the comparison tells the images apart: swapped, they give other log-probs
                swapped = prompt_logps(
                    model,
                    processor,
                    row["prompt"],
                    row["images"][::-1],
                    completion,
                    temperature=config.temperature,
                )
                assert (swapped - reference).abs().max() > 1e-3

    # one rollout (the installed check compares its grids with the rows' two images each)
    inputs = trainer._generate_and_score_completions(batch)
    assert inputs["num_images"] == [2, 2, 2, 2] and inputs["image_grid_thw"].size(0) == 8
    check_rollout_batch(inputs, [2, 2, 2, 2], processor=processor)
    check_parity(inputs, lambda sample: sample // 2)  # the whole batch in one forward
    check_parity(inputs, lambda sample: sample // 2, chunk=1)  # per-sample chunks: grids sliced by num_images

    # the training path: one rollout, shuffled and split into steps_per_generation slices (each checked as it is made)
    prompts = [
        processor.apply_chat_template(
            [prepare_multimodal_messages(row["prompt"], images=row["images"])],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
        )["input_ids"][0]
        for row in (rows[0], rows[1])
    ]
    model.train()
    trainer._prepare_inputs(batch)
    slices = trainer._buffered_inputs
    assert len(slices) == 2
    for part in slices:
        check_rollout_batch(part, processor=processor)
        assert part["num_images"] == [2, 2] and part["image_grid_thw"].size(0) == 4

        def row_of(sample, part=part):
            return prompts.index(part["prompt_ids"][sample][part["prompt_mask"][sample].bool()].tolist())

        check_parity(part, row_of)


def test_rollout_check_catches_grids_split_per_sample(tiny_captioner_path, tmp_path, monkeypatch):
    """The installed rollout check refuses a generation-batch split that keeps one grid row per sample (TRL #4488's class)."""
    import trl.trainer.grpo_trainer as grpo_trainer

    from rapid_agent.errors import ConfigError

    _, rows, trainer = _grpo_trainer(tiny_captioner_path, tmp_path, "--steps_per_generation", "2",
                                     "--max_completion_length", "4", rows=_two_image_rows)
    split = grpo_trainer.split_pixel_values_by_grid

    def split_grids_per_sample(batch):  # the single-image assumption: one grid row per sample
        out = split(batch)
        if isinstance(out.get("image_grid_thw"), list):
            out = {**out, "image_grid_thw": [grids[:1] for grids in out["image_grid_thw"]]}
        return out

    monkeypatch.setattr(grpo_trainer, "split_pixel_values_by_grid", split_grids_per_sample)
    trainer.model.train()
    with pytest.raises(ConfigError, match=r"2 image_grid_thw rows for 4 images.*issues/4488"):
        trainer._prepare_inputs([rows[i] for i in range(2) for _ in range(2)])


def _grpo_trainer(captioner, tmp_path, *flags: str, rows=None):
    """TRL's GRPO trainer on the miniworld recipe with the tiny captioner and a scripted reasoner, one step,
    two captions per prompt; `rows(tasks)` builds the data from the recipe's first two training tasks (the
    recipe's own rows otherwise)."""
    from rapid_agent.testing import fact_reasoner
    from training.config import RECIPES, parse_args
    from training.data import load_training_data
    from training.vpo import build_trainer

    config, model_args = parse_args([
        "--config", str(RECIPES / "miniworld.yaml"), "--model_name_or_path", str(captioner), "--reasoner", "tiny",
        "--max_samples", "2", "--num_generations", "2", "--per_device_train_batch_size", "4", "--max_steps", "1",
        "--output_dir", str(tmp_path / "vpo"), *flags,
    ])  # fmt: skip
    data = rows(list(world.tasks("train", 2, seed=config.seed))) if rows is not None else load_training_data(config)
    return config, data, build_trainer(config, model_args, reasoners=[fact_reasoner({})], train_dataset=data)

