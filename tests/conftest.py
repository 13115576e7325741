"""Shared fixtures: the tiny offline models (built once per session) and real local servers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from rapid_agent.testing import ensure_tiny_models
from rapid_agent.testing.local_servers import LocalOpenAIServer

pytest_plugins = [
    "rapid_agent.testing.vllm_pytest",  # the `vllm` marker and the session's real vLLM server
    "rapid_agent.testing.miniworld_pytest",  # the `miniworld_quick` marker: one quick run, in the background
]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> tuple[Path, Path]:
    """(captioner_path, reasoner_path) of the tiny random models, built once per test session."""
    return ensure_tiny_models(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def tiny_captioner_path(tiny_models) -> Path:
    return tiny_models[0]


@pytest.fixture(scope="session")
def tiny_reasoner_path(tiny_models) -> Path:
    return tiny_models[1]


@pytest.fixture(scope="session")
def reasoner_server(tiny_reasoner_path):
    """`transformers serve` on the tiny reasoner, on a free loopback port, for the whole session."""
    with LocalOpenAIServer(tiny_reasoner_path) as server:
        yield server


@pytest.fixture(scope="session")
def captioner_server(tiny_captioner_path):
    """`transformers serve` on the tiny captioner, on a free loopback port, for the whole session."""
    with LocalOpenAIServer(tiny_captioner_path) as server:
        yield server


@pytest.fixture
def circles_image() -> Image.Image:
    """A small test picture: three red circles on white."""
    image = Image.new("RGB", (96, 64), "white")
    draw = ImageDraw.Draw(image)
    for x in (8, 38, 68):
        draw.ellipse((x, 20, x + 20, 40), fill="red")
    return image
