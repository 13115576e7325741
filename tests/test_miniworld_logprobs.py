"""The captioner's training paths (TRL's SFT collator and GRPO) score tokens exactly as a direct forward does.

Qwen2.5-VL computes its 3-D (mrope) positions only when `mm_token_type_ids` reaches the model; a
training path that drops or misaligns it trains with other positions than `generate()` uses. These
tests compare per-token log-probs of each training path with a direct, unpadded forward of the
processor's own inputs, and check that the comparison is sensitive to the trap (1-D positions differ).
"""

from __future__ import annotations

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


def direct_logps(model, processor, task: world.Task, completion_ids: list[int], *, positions: bool = True,
                 temperature: float = 1.0) -> torch.Tensor:
    """Log-probs of `completion_ids` after the graph's captioning prompt, one unpadded sequence."""
    from trl.data_utils import prepare_multimodal_messages

    messages = prepare_multimodal_messages(sft.caption_prompt(task), images=[_image(task)])
    inputs = processor.apply_chat_template(
        [messages], add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    completion = torch.tensor([completion_ids])
    input_ids = torch.cat([inputs["input_ids"], completion], dim=1)
    extra = {"mm_token_type_ids": torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(completion)], dim=1)}
    with torch.no_grad():
        logits = model(
            input_ids=input_ids, attention_mask=torch.ones_like(input_ids), pixel_values=inputs["pixel_values"],
            image_grid_thw=inputs["image_grid_thw"], **(extra if positions else {}),
        ).logits
    logps = (logits[0, -len(completion_ids) - 1 : -1].float() / temperature).log_softmax(-1)
    return logps.gather(-1, completion[0].unsqueeze(-1)).squeeze(-1)


def test_sft_collator_matches_direct_forward(captioner):
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    model, processor = captioner
    tasks = list(world.tasks("train", 3, seed=5))
    rng = __import__("random").Random(0)
    examples = [  # different description lengths: the batch is padded on both sides
        {"prompt": sft.caption_prompt(t), "completion": [{"role": "assistant", "content": world.partial_description(
            t.scene, rng, full_probability=float(i == 0))}], "images": [_image(t)]}
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
        assert (direct_logps(model, processor, task, ids.tolist(), positions=False) - reference).abs().max() > 1e-3


def test_grpo_logprobs_match_direct_forward(tiny_captioner_path, tmp_path):
    from rapid_agent.testing import fact_reasoner
    from training.config import RECIPES, parse_args
    from training.data import load_training_data
    from training.vpo import build_trainer

    config, model_args = parse_args([
        "--config", str(RECIPES / "miniworld.yaml"), "--model_name_or_path", str(tiny_captioner_path), "--reasoner", "tiny",
        "--max_samples", "2", "--num_generations", "2", "--per_device_train_batch_size", "4",
        "--max_completion_length", "8", "--max_steps", "1", "--output_dir", str(tmp_path / "vpo"),
    ])
    rows = load_training_data(config)
    trainer = build_trainer(config, model_args, reasoners=[fact_reasoner({})], train_dataset=rows)
    batch = [rows[i] for i in range(2) for _ in range(2)]
    inputs = trainer._generate_and_score_completions(batch)
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
    with torch.no_grad():
        logps, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, ids, mask, inputs["completion_ids"].size(1), pixel_values=inputs.get("pixel_values"),
            image_grid_thw=inputs.get("image_grid_thw"), num_images=inputs.get("num_images"),
            mm_token_type_ids=inputs.get("mm_token_type_ids"),
        )
    tasks = {t.id: t for t in world.tasks("train", 2, seed=config.seed)}
    model, processor = trainer.model.eval(), trainer.processing_class
    for row in range(len(batch)):
        keep = inputs["completion_mask"][row].bool()
        completion = inputs["completion_ids"][row][keep].tolist()
        # GRPO scores the sampling distribution: logits divided by the rollout temperature
        reference = direct_logps(model, processor, tasks[batch[row]["row_id"]], completion, temperature=config.temperature)
        torch.testing.assert_close(logps[row][keep], reference, atol=2e-4, rtol=1e-4)
