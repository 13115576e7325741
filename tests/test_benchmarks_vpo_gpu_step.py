"""benchmarks/vpo_gpu_step.py: the published real-size configs (fast, on the meta device) and a --tiny CPU run."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "vpo_gpu_step.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("vpo_gpu_step", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _billions(model) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e9


def _fields(config, expected: dict) -> dict:
    return {name: getattr(config, name) for name in expected}


# fmt: off
# the published config.json values (huggingface.co/Qwen/Qwen2.5-VL-3B-Instruct, .../Qwen2.5-1.5B-Instruct)
VL_TEXT = {"hidden_size": 2048, "num_hidden_layers": 36, "num_attention_heads": 16, "num_key_value_heads": 2,
           "intermediate_size": 11008, "vocab_size": 151936}
VL_VISION = {"depth": 32, "hidden_size": 1280, "out_hidden_size": 2048, "intermediate_size": 3420, "num_heads": 16,
             "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31]}
LM = {"hidden_size": 1536, "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2,
      "intermediate_size": 8960, "vocab_size": 151936, "tie_word_embeddings": True}
# fmt: on


def test_real_size_configs_match_the_published_models(bench):
    captioner, reasoner = bench.captioner_config(), bench.reasoner_config()
    assert _fields(captioner.text_config, VL_TEXT) == VL_TEXT
    assert captioner.text_config.rope_parameters["mrope_section"] == [16, 24, 24]
    assert _fields(captioner.vision_config, VL_VISION) == VL_VISION
    assert _fields(reasoner, LM) == LM
    assert (captioner.image_token_id, reasoner.eos_token_id) == (151655, 151645)  # the published ids
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        assert 3.70 < _billions(AutoModelForImageTextToText.from_config(captioner)) < 3.80  # published: 3.75B
        assert 1.50 < _billions(AutoModelForCausalLM.from_config(reasoner)) < 1.58  # published: 1.54B


def test_token_ids_come_from_the_tokenizer(bench):
    ids = {token: i for i, token in enumerate(bench.QWEN_IDS)}
    captioner = bench.captioner_config(bench.TINY_VL, ids)
    assert captioner.image_token_id == ids["<|image_pad|>"]
    assert captioner.text_config.pad_token_id == ids["<|endoftext|>"]
    assert bench.reasoner_config(bench.TINY_LM, ids).eos_token_id == ids["<|im_end|>"]


@pytest.mark.slow
def test_tiny_run_prints_step_time_tokens_per_second_and_memory(tmp_path):
    command = [sys.executable, str(SCRIPT), "--tiny", "--steps", "2", "--out", str(tmp_path)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["steps"] == 2 and [r["step"] for r in result["per_step"]] == [1, 2]
    assert result["step_time_s"] > 0 and result["tokens_per_s"] > 0
    assert result["peak_gpu_mem_gib"] is None and result["device"] == "cpu"
    assert "step 2: " in done.stdout and "peak GPU memory n/a" in done.stdout
    assert (tmp_path / "captioner" / "config.json").is_file()
    assert (tmp_path / "run" / "vpo_config.yaml").is_file()
