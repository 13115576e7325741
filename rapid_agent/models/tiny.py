"""Tiny, randomly initialised Hugging Face checkpoints, built offline (the `tiny` spec's models).

:func:`build_tiny_captioner` / :func:`build_tiny_reasoner` / :func:`ensure_tiny_models` write a Qwen2.5-VL
captioner and a Qwen2 text reasoner with a locally trained byte-level BPE tokenizer and a Qwen-style chat
template. They load with the usual ``Auto*`` classes and generate (gibberish) in milliseconds, so whole
pipelines - local inference, GRPO/VPO training, ``transformers serve`` / ``vllm serve`` - run on a CPU.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import GenerationConfig, PreTrainedTokenizerFast

QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
"""The Qwen2.5 special tokens the tiny tokenizers carry (same strings as the real models)."""

_QWEN_PRETOKENIZE_REGEX = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_MARKER = "rapid-tiny-model.complete"
_MIN_PIXELS = 56 * 56
_MAX_PIXELS = 224 * 224

# Qwen2-VL style template. Plain ``{% %}`` tags only: transformers renders with trim_blocks, and
# ``{%- -%}`` would eat the newline after ``<|im_start|>role``. No newline directly follows a tag.
_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or part['type'] == 'image_url' %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = """\
The image shows a bar chart with three bars. The first bar is red, the second bar is blue and the
third bar is green. The red bar has a value of 3, the blue bar has a value of 5 and the green bar
has a value of 2. The title of the chart is Sales per year. The x axis shows the years 2019, 2020,
2021 and 2022. The y axis shows numbers from 0 to 100.
There is a triangle with sides of length 3, 4 and 5. The angle between the two short sides is 90
degrees. The area of the triangle is 6. A circle has a radius of 7 and a square has a side of 8.
Count the objects in the picture. There are three red circles, two blue squares and one yellow
triangle. In total there are 6 objects. How many circles are there? The answer is 3.
A line graph shows the temperature over a week: Monday 12, Tuesday 15, Wednesday 9, Thursday 11,
Friday 14, Saturday 18 and Sunday 20. The highest value is on Sunday.
A table lists the price of apples, bananas and oranges. Apples cost 1.50, bananas cost 0.25 and
oranges cost 0.75. What is the total cost? Think step by step and put the final answer in
\\boxed{}. The final answer is \\boxed{2.50}.
Describe the image in detail. The photo shows a cat sitting on a table next to a window. A man is
walking a dog in the park. The sky is blue and the grass is green. A woman holds an umbrella.
Question: which option is correct? Options: A, B, C, D. Answer: B. The correct option is (C).
Solve the equation x + 2 = 5. So x = 3. The sum of 12 and 30 is 42. Half of 64 is 32.
The diagram shows a geometry problem with points A, B, C and D. The segment AB is parallel to CD.
The pie chart shows four parts: 25%, 25%, 40% and 10%. The largest part is 40 percent.
You are a helpful assistant. Please answer the question based on the description of the image.
If the description does not contain enough information, say that you cannot tell.
0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 25 50 75 100 1000 + - * / = ( ) [ ] { } , . : ; ? !
"""


def _train_tokenizer(corpus: Sequence[str] = (), phrases: Sequence[str] = ()) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on the built-in corpus (and `corpus`), wrapped for transformers;
    each of `phrases` becomes one token."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    # Qwen2's own pipeline: AutoTokenizer rebuilds a ``qwen2`` checkpoint's tokenizer as
    # Qwen2Tokenizer with exactly these parts, so in-memory and reloaded tokenizers agree.
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        special_tokens=list(QWEN_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator([*_CORPUS.splitlines(), *corpus], trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        chat_template=_CHAT_TEMPLATE,
    )
    tokenizer.add_tokens(list(phrases))
    return tokenizer


def _token_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    """Map each Qwen special token to its id in ``tokenizer``."""
    return {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN_SPECIAL_TOKENS}


def _special_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, Any]:
    """eos/pad/bos settings shared by model configs and generation configs."""
    ids = _token_ids(tokenizer)
    return {"bos_token_id": None, "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"]}


def _generation_config(tokenizer: PreTrainedTokenizerFast) -> GenerationConfig:
    """Greedy generation config stopping at ``<|im_end|>`` or ``<|endoftext|>`` (as Qwen does)."""
    from transformers import GenerationConfig

    ids = _token_ids(tokenizer)
    return GenerationConfig(
        bos_token_id=None,
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
    )


def _is_complete(path: Path) -> bool:
    return (path / _MARKER).is_file()


def _build_atomically(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp_dir)`` and move the result to ``path``, unless a complete build is there.

    The build lands in a sibling temporary directory that is renamed into place with its completion
    marker already written, so readers never see a partial build and concurrent builders are safe:
    whoever renames first wins, the others discard their copy.
    """
    path = Path(path).expanduser()
    if _is_complete(path):
        return path
    if path.exists() and any(path.iterdir()) and not _is_complete(path):
        raise FileExistsError(f"{path} exists and is not a complete tiny-model build; remove it first")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        write(tmp)
        (tmp / _MARKER).write_text("ok\n")
        os.replace(tmp, path)  # replaces a missing or empty directory atomically
    except OSError:
        if not _is_complete(path):
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _write_captioner(out: Path, seed: int, corpus: Sequence[str], phrases: Sequence[str]) -> None:
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    tokenizer = _train_tokenizer(corpus, phrases)
    ids = _token_ids(tokenizer)
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(
            size={"shortest_edge": _MIN_PIXELS, "longest_edge": _MAX_PIXELS}
        ),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(
            size={"shortest_edge": _MIN_PIXELS, "longest_edge": _MAX_PIXELS}
        ),
        chat_template=_CHAT_TEMPLATE,
    )
    config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "intermediate_size": 256,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 4096,
            "rope_scaling": {"type": "mrope", "mrope_section": [4, 6, 6]},
            **_special_ids(tokenizer),
        },
        vision_config={
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 4,
            "out_hidden_size": 128,
            "fullatt_block_indexes": [1],
            "window_size": 56,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config = _generation_config(tokenizer)
    model.save_pretrained(out)
    processor.save_pretrained(out)


def _write_reasoner(out: Path, seed: int, corpus: Sequence[str], phrases: Sequence[str]) -> None:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = _train_tokenizer(corpus, phrases)
    config = Qwen2Config(
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=256,
        vocab_size=len(tokenizer),
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        **_special_ids(tokenizer),
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = _generation_config(tokenizer)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def build_tiny_captioner(
    path: str | Path, *, seed: int = 0, corpus: Sequence[str] = (), phrases: Sequence[str] = ()
) -> Path:
    """Build a tiny random Qwen2.5-VL captioner (model + processor) at ``path``, offline, in seconds.

    The checkpoint reloads with ``AutoModelForImageTextToText.from_pretrained(path)`` and
    ``AutoProcessor.from_pretrained(path)``; the tokenizer pads on the left, so batched generation over
    ``processor.apply_chat_template(conversations, tokenize=True, return_dict=True, return_tensors="pt",
    padding=True, add_generation_prompt=True)`` with ``{"type": "image", "image": <PIL image>}`` parts
    works. Images are resized to between 56x56 and 224x224 pixels (4 to 64 image tokens).
    ``corpus``: further text the tokenizer learns its merges from (a task's prompts: shorter sequences).
    ``phrases``: strings that become one token each, wherever they occur (e.g. a task's ``"bar A: "``:
    the value that follows is then predicted at a position naming its bar, with no look-back).
    Returns ``path``; an existing complete build there is kept as is.
    """
    return _build_atomically(path, lambda out: _write_captioner(out, seed, corpus, phrases))


def build_tiny_reasoner(
    path: str | Path, *, seed: int = 0, corpus: Sequence[str] = (), phrases: Sequence[str] = ()
) -> Path:
    """Build a tiny random Qwen2 text model (model + tokenizer) at ``path``, offline, in seconds.

    Hidden size 128, 4 attention heads of size 32 (a size vLLM's CPU backend accepts), 2 key/value
    heads, 2 layers. Reloads with ``AutoModelForCausalLM`` / ``AutoTokenizer``; the tokenizer has a
    Qwen-style system/user/assistant chat template; ``corpus`` and ``phrases`` as for :func:`build_tiny_captioner`.
    Returns ``path``; an existing complete build is kept.
    """
    return _build_atomically(path, lambda out: _write_reasoner(out, seed, corpus, phrases))


def tiny_models_dir() -> Path:
    """Default cache directory of the tiny models: ``$RAPID_TINY_MODELS_DIR`` or
    ``~/.cache/rapid-agent/tiny-models``."""
    configured = os.environ.get("RAPID_TINY_MODELS_DIR")
    return (
        Path(configured).expanduser()
        if configured
        else Path.home() / ".cache" / "rapid-agent" / "tiny-models"
    )


def ensure_tiny_models(root: str | Path | None = None) -> tuple[Path, Path]:
    """Build (once) and return ``(captioner_path, reasoner_path)`` under ``root``.

    ``root`` defaults to :func:`tiny_models_dir`; the models live in ``root/"captioner"`` and
    ``root/"reasoner"``. Safe to call from several processes at once.
    """
    root = Path(root).expanduser() if root is not None else tiny_models_dir()
    return build_tiny_captioner(root / "captioner"), build_tiny_reasoner(root / "reasoner")


