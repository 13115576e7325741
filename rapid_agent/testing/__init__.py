"""Offline test infrastructure (public: users test their own pipelines with it too).

* the tiny random Qwen2.5-VL / Qwen2 checkpoints built offline (from :mod:`rapid_agent.models.tiny`).
* :mod:`.scripted_models`: deterministic LangChain chat models (scripted replies, failures, tool calls).
* :mod:`.openai_server`: a real OpenAI-compatible HTTP server answering with a scripted model.
* :mod:`.local_servers`: real local servers (`transformers serve`) started and stopped by pid.
* :mod:`.langgraph_server`: LangGraph's own server (`langgraph dev`) on a loopback port.
* :mod:`.image_memory`: peak memory of `load_images` per image, measured in a fresh process.
"""

from rapid_agent.models.tiny import (
    QWEN_SPECIAL_TOKENS,
    build_tiny_captioner,
    build_tiny_reasoner,
    ensure_tiny_models,
    tiny_models_dir,
)
from rapid_agent.testing.scripted_models import (
    ScriptedChatModel,
    ToolCallingScriptedModel,
    echo_captioner,
    fact_reasoner,
)

__all__ = [
    "QWEN_SPECIAL_TOKENS",
    "ScriptedChatModel",
    "ToolCallingScriptedModel",
    "build_tiny_captioner",
    "build_tiny_reasoner",
    "echo_captioner",
    "ensure_tiny_models",
    "fact_reasoner",
    "tiny_models_dir",
]
