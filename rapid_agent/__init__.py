"""rapid-agent: decoupled, upgradeable multimodal reasoning (RAPID, arXiv 2506.04559).

An MLLM captioner describes the image with the question in mind; any text-only reasoner answers
from that description. `build_rapid_graph` returns the compiled LangGraph graph that the library,
VPO training and the eval harness all share.
"""

from rapid_agent.agents import as_tool
from rapid_agent.answers import Verdict, extract_answer, grade, grade_output
from rapid_agent.errors import BackendError, ConfigError, ImageInputError, InputError, RapidError
from rapid_agent.graph import build_rapid_graph
from rapid_agent.images import ImagePolicy, load_images
from rapid_agent.models.spec import GenerationSettings, ModelResolver, ModelSpec
from rapid_agent.prompts import PRESETS, PromptPreset, get_preset
from rapid_agent.state import NodeUsage, RapidContext, RapidInput, RapidOutput, RapidState

__all__ = [
    "PRESETS",
    "BackendError",
    "ConfigError",
    "GenerationSettings",
    "ImageInputError",
    "ImagePolicy",
    "InputError",
    "ModelResolver",
    "ModelSpec",
    "NodeUsage",
    "PromptPreset",
    "RapidContext",
    "RapidError",
    "RapidInput",
    "RapidOutput",
    "RapidState",
    "Verdict",
    "as_tool",
    "build_rapid_graph",
    "extract_answer",
    "get_preset",
    "grade",
    "grade_output",
    "load_images",
]
