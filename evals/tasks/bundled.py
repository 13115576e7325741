"""A small offline benchmark whose images are drawn by code, with exact answers.

Four kinds of items (9 each, 36 in all): bar charts with labelled values, counting shapes, right
triangles with labelled legs, and a price table to read. Drawn deterministically (seeded), so the
harness and the offline demo run with no download and the caption cache keys stay stable.
"""

from __future__ import annotations

import functools
import io
import random
from collections.abc import Callable
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from evals.metrics import by_group
from evals.sample import Sample
from evals.tasks.base import Benchmark, Row, Split

SEED = 2506_04559
PER_KIND = 3  # drawings per kind; each drawing asks three questions
COLORS = {"red": (220, 40, 40), "blue": (40, 80, 220), "green": (40, 160, 60), "orange": (240, 150, 20)}


def _font(size: int = 16) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _item(kind: str, n: int, q: int, image: bytes, question: str, answer: Any, answer_type: str, **extra: Any) -> dict:
    return {
        "id": f"{kind}-{n}{'abc'[q]}", "category": kind, "image": image, "question": question,
        "answer": str(answer), "answer_type": answer_type, **extra,
    }


def _bars(rng: random.Random, n: int) -> list[dict]:
    labels = ["A", "B", "C", "D"][: rng.choice([3, 4])]
    values = rng.sample(range(2, 20), len(labels))
    image = Image.new("RGB", (320, 240), "white")
    draw = ImageDraw.Draw(image)
    draw.line((30, 210, 310, 210), fill="black", width=2)
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        x = 45 + i * 65
        top = 210 - value * 9
        draw.rectangle((x, top, x + 40, 210), fill=list(COLORS.values())[i])
        draw.text((x + 12, top - 20), str(value), fill="black", font=_font())
        draw.text((x + 14, 214), label, fill="black", font=_font())
    png = _png(image)
    asked = rng.choice(labels)
    return [
        _item("bars", n, 0, png, f"What is the value of bar {asked}?", values[labels.index(asked)], "integer"),
        _item("bars", n, 1, png, "Which bar is the tallest?", f"bar {labels[values.index(max(values))]}",
              "multiple_choice", options=[f"bar {label}" for label in labels]),
        _item("bars", n, 2, png, "What is the sum of the values of all bars?", sum(values), "integer"),
    ]


def _count(rng: random.Random, n: int) -> list[dict]:
    circles, squares = rng.randint(1, 6), rng.randint(1, 6)
    image = Image.new("RGB", (320, 240), "white")
    draw = ImageDraw.Draw(image)
    cells = rng.sample([(x, y) for x in range(6) for y in range(4)], circles + squares)
    for i, (cx, cy) in enumerate(cells):
        box = (15 + cx * 50, 15 + cy * 55, 50 + cx * 50, 50 + cy * 55)
        (draw.ellipse if i < circles else draw.rectangle)(box, fill=COLORS["red" if i < circles else "blue"])
    png = _png(image)
    return [
        _item("count", n, 0, png, "How many red circles are in the picture?", circles, "integer"),
        _item("count", n, 1, png, "How many blue squares are in the picture?", squares, "integer"),
        _item("count", n, 2, png, "How many shapes are in the picture in total?", circles + squares, "integer"),
    ]


def _triangle(rng: random.Random, n: int) -> list[dict]:
    a, b, c = rng.choice([(3, 4, 5), (6, 8, 10), (5, 12, 13), (8, 15, 17), (9, 12, 15)])  # even a*b: whole areas
    image = Image.new("RGB", (320, 240), "white")
    draw = ImageDraw.Draw(image)
    corner, top, right = (60, 200), (60, 40), (280, 200)
    draw.polygon([corner, top, right], outline="black", width=3)
    draw.rectangle((60, 185, 75, 200), outline="black")
    draw.text((20, 110), f"{a} cm", fill="black", font=_font())
    draw.text((150, 210), f"{b} cm", fill="black", font=_font())
    png = _png(image)
    return [
        _item("geometry", n, 0, png, "The triangle has a right angle. What is the length of its hypotenuse in cm?", c, "integer"),
        _item("geometry", n, 1, png, "The triangle has a right angle. What is its area in square cm?", a * b // 2, "integer"),
        _item("geometry", n, 2, png, "The triangle has a right angle. What is its perimeter in cm?", a + b + c, "integer"),
    ]


def _table(rng: random.Random, n: int) -> list[dict]:
    items = rng.sample(["apples", "bread", "cheese", "milk", "rice", "tea"], 4)
    prices = [round(rng.randint(25, 600) / 100 * 4) / 4 for _ in items]
    while len(set(prices)) < len(prices):
        prices = [round(rng.randint(25, 600) / 100 * 4) / 4 for _ in items]
    image = Image.new("RGB", (320, 240), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((30, 20, 290, 220), outline="black", width=2)
    draw.line((160, 20, 160, 220), fill="black", width=2)
    draw.text((50, 30), "Item", fill="black", font=_font())
    draw.text((180, 30), "Price ($)", fill="black", font=_font())
    for i, (item, price) in enumerate(zip(items, prices, strict=True)):
        y = 60 + i * 38
        draw.line((30, y, 290, y), fill="black")
        draw.text((50, y + 10), item, fill="black", font=_font())
        draw.text((180, y + 10), f"{price:.2f}", fill="black", font=_font())
    png = _png(image)
    x, y = rng.sample(range(len(items)), 2)
    cheapest = items[prices.index(min(prices))]
    return [
        _item("table", n, 0, png, f"What is the price of {items[x]} in dollars?", f"{prices[x]:.2f}", "float", precision=2),
        _item("table", n, 1, png, f"How much do {items[x]} and {items[y]} cost together, in dollars?",
              f"{prices[x] + prices[y]:.2f}", "float", precision=2),
        _item("table", n, 2, png, "Which item is the cheapest?", cheapest, "multiple_choice", options=items),
    ]


KINDS: dict[str, Callable[[random.Random, int], list[dict]]] = {
    "bars": _bars, "count": _count, "geometry": _triangle, "table": _table,
}


@functools.cache
def _generate() -> tuple[dict, ...]:
    rng = random.Random(SEED)
    return tuple(item for kind in KINDS.values() for n in range(1, PER_KIND + 1) for item in kind(rng, n))


def generate(split: str) -> list[dict]:
    return list(_generate())


def to_sample(row: Row) -> Sample:
    options = row.get("options")
    return Sample(
        id=row.text("id"),
        benchmark="bundled",
        images=(row.image("image"),),
        question=row.text("question"),
        options=tuple(options) if options else None,
        answer=row.text("answer"),
        answer_type=row.text("answer_type"),
        precision=row.get("precision"),
        metadata={"category": row.text("category")},
    )


BENCHMARK = Benchmark(
    name="bundled",
    splits={"test": Split(parts=("test",))},
    default_split="test",
    to_sample=to_sample,
    metrics=by_group("category"),
    generate=generate,
)
