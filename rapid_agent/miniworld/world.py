"""The miniature world: bar charts drawn by code, questions with exact answers, and every text target.

A scene is 3 or 4 bars labelled A-D with distinct values 1-19, drawn on a 224x224 canvas in 56-px
slots (aligned with Qwen2.5-VL's 28-px merged patches), the value written above each bar in PIL's
default font at size 28. Five question families need reasoning over the scene: the value of a bar,
the tallest / shortest bar (multiple choice, answered with a letter), a difference of two bars and
the sum of all bars. Scenes are split by a hash of their values, so train and test never share one.
"""

from __future__ import annotations

import io
import random
import zlib
from collections.abc import Iterator
from typing import Literal

from PIL import Image, ImageDraw, ImageFont
from pydantic import BaseModel, ConfigDict

from rapid_agent.errors import ConfigError

Split = Literal["train", "test"]
Family = Literal["value", "tallest", "shortest", "difference", "sum"]
FAMILIES: tuple[Family, ...] = ("value", "tallest", "shortest", "difference", "sum")
SumStyle = Literal["line", "partial"]

SIZE = 224
SLOT = 56
BASELINE = 190
UNIT = 7  # pixels per value unit: the tallest bar (19) leaves room for its number above it
FONT_SIZE = 28
LABELS = "ABCD"
MAX_VALUE = 19
TEST_FRACTION = 8  # one scene in 8 (by hash of its values) is held out for evaluation
_COLORS = ((220, 40, 40), (40, 80, 220), (40, 160, 60), (240, 150, 20))
_SPLIT_SEED = {"train": 1, "test": 2}


class Scene(BaseModel):
    """What was drawn: bar values in label order (A, B, ...)."""

    model_config = ConfigDict(frozen=True)

    values: tuple[int, ...]

    @property
    def labels(self) -> str:
        return LABELS[: len(self.values)]

    @property
    def split(self) -> Split:
        return "test" if zlib.crc32(repr(self.values).encode()) % TEST_FRACTION == 0 else "train"

    def value(self, label: str) -> int:
        return self.values[self.labels.index(label)]


class Task(BaseModel):
    """One item: a scene, a question (options for multiple choice) and its exact answer."""

    model_config = ConfigDict(frozen=True)

    id: str
    family: Family
    scene: Scene
    question: str
    options: tuple[str, ...] | None = None
    answer: str  # the option text for multiple choice (graded against a letter too)
    answer_type: Literal["integer", "multiple_choice"]
    asked: tuple[str, ...] = ()  # the bars the question names (value, difference)

    @property
    def letter(self) -> str | None:
        """The option letter of the answer (multiple choice only)."""
        return LABELS[self.options.index(self.answer)] if self.options else None


def sample_scene(rng: random.Random, split: Split) -> Scene:
    """A random scene of `split` (rejection-sampled on the hash that assigns scenes to splits)."""
    while True:
        scene = Scene(values=tuple(rng.sample(range(1, MAX_VALUE + 1), rng.choice((3, 4)))))
        if scene.split == split:
            return scene


def draw(scene: Scene) -> Image.Image:
    """The chart as a 224x224 RGB image."""
    image = Image.new("RGB", (SIZE, SIZE), "white")
    canvas = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=FONT_SIZE)
    canvas.line((0, BASELINE, SIZE, BASELINE), fill="black", width=2)
    for i, (label, value) in enumerate(zip(scene.labels, scene.values, strict=True)):
        left = i * SLOT
        top = BASELINE - value * UNIT
        canvas.rectangle((left + 10, top, left + SLOT - 10, BASELINE), fill=_COLORS[i])
        _centered(canvas, str(value), left, top - FONT_SIZE - 2, font)
        _centered(canvas, label, left, BASELINE + 2, font)
    return image


def _centered(canvas: ImageDraw.ImageDraw, text: str, left: int, y: int, font: ImageFont.ImageFont) -> None:
    width = canvas.textlength(text, font=font)
    canvas.text((left + (SLOT - width) / 2, y), text, fill="black", font=font)


def png(scene: Scene) -> bytes:
    buffer = io.BytesIO()
    draw(scene).save(buffer, format="PNG")
    return buffer.getvalue()


def make_task(rng: random.Random, scene: Scene, family: Family, task_id: str) -> Task:
    """A question of `family` about `scene`."""
    labels, values = scene.labels, scene.values
    options = tuple(f"bar {label}" for label in labels)
    common = {"id": task_id, "family": family, "scene": scene}
    if family == "value":
        label = rng.choice(labels)
        return Task(**common, question=f"What is the value of bar {label}?", answer=str(scene.value(label)),
                    answer_type="integer", asked=(label,))
    if family in ("tallest", "shortest"):
        pick = max if family == "tallest" else min
        label = labels[values.index(pick(values))]
        return Task(**common, question=f"Which bar is the {family}?", options=options, answer=f"bar {label}",
                    answer_type="multiple_choice")
    if family == "difference":
        big, small = sorted(rng.sample(labels, 2), key=scene.value, reverse=True)
        return Task(**common, question=f"What is the value of bar {big} minus the value of bar {small}?",
                    answer=str(scene.value(big) - scene.value(small)), answer_type="integer", asked=(big, small))
    if family == "sum":
        return Task(**common, question="What is the sum of the values of all bars?", answer=str(sum(values)),
                    answer_type="integer")
    raise ConfigError(f"unknown question family {family!r}; known: {', '.join(FAMILIES)}")


def tasks(split: Split, count: int, *, seed: int = 0) -> Iterator[Task]:
    """`count` tasks of `split`, families in turn, deterministic in (`split`, `seed`)."""
    rng = random.Random(f"miniworld-{_SPLIT_SEED[split]}-{seed}")
    for i in range(count):
        family = FAMILIES[i % len(FAMILIES)]
        yield make_task(rng, sample_scene(rng, split), family, f"{split}-{seed}-{i:05d}-{family}")


# ------------------------------------------------------------------------------------ text targets


def bar_phrase(label: str) -> str:
    """What precedes a bar's value in a description: `bar A: `."""
    return f"bar {label}: "


DESCRIPTION_PHRASES = tuple(bar_phrase(label) for label in LABELS)
"""Every bar phrase: the captioner's tokenizer holds each as one token (see `training.miniworld.sft`)."""


def describe(scene: Scene, labels: str | None = None) -> str:
    """The scene as `bar A: 7; bar B: 15; bar C: 4` (only `labels` when given, in label order)."""
    chosen = scene.labels if labels is None else labels
    return "; ".join(f"{bar_phrase(label)}{scene.value(label)}" for label in scene.labels if label in chosen)


def partial_description(scene: Scene, rng: random.Random, *, full_probability: float) -> str:
    """The SFT captioner's target: all bars with `full_probability`, else two bars chosen at random.

    Deliberately blind to the question (the starting point VPO is meant to fix): a question about
    a bar left out, or about all bars, cannot be answered from it.
    """
    if rng.random() < full_probability:
        return describe(scene)
    return describe(scene, "".join(rng.sample(scene.labels, 2)))


def reasoner_work(task: Task, *, sum_style: SumStyle) -> str:
    """Short written work ending in `\\boxed{answer}` (a letter for multiple choice)."""
    scene = task.scene
    if task.family == "value":
        work = f"bar {task.asked[0]}: {task.answer}."
    elif task.family in ("tallest", "shortest"):
        word = "largest" if task.family == "tallest" else "smallest"
        label = task.letter
        work = f"{scene.value(label)} is the {word}: bar {label}."
    elif task.family == "difference":
        big, small = (scene.value(label) for label in task.asked)
        work = f"{big} - {small} = {task.answer}."
    else:
        work = _sum_work(scene.values, sum_style)
    return f"{work} \\boxed{{{task.letter or task.answer}}}"


def _sum_work(values: tuple[int, ...], style: SumStyle) -> str:
    if style == "line":
        return f"{' + '.join(map(str, values))} = {sum(values)}."
    steps, total = [], values[0]
    for value in values[1:]:
        steps.append(f"{total} + {value} = {total + value}")
        total += value
    return "; ".join(steps) + "."


def direct_answer(task: Task) -> str:
    """The captioner's own answer when asked directly (no work: the MLLM alone reasons poorly)."""
    return f"\\boxed{{{task.letter or task.answer}}}"


def rows(split: Split, count: int, *, seed: int = 0) -> list[dict]:
    """`tasks` as plain rows (PNG image bytes, options as a list, the drawn values) for datasets and loaders."""
    return [
        {
            "id": task.id, "family": task.family, "question": task.question,
            "options": list(task.options) if task.options else None, "answer": task.answer,
            "answer_type": task.answer_type, "image": png(task.scene), "values": list(task.scene.values),
        }
        for task in tasks(split, count, seed=seed)
    ]
