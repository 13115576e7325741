"""Option texts printed inside a question, for benchmarks without an options column.

MathVerse, MMStar, LogicVista and We-Math give the gold as a letter and print the options in the
question text (We-Math: in its `option` column), each in its own layout. Parsing them lets an answer
written as the option's text map to its letter. A layout is a regex matching one option label, the
letter in group `letter`; the options are the last run of labels A, B, C, ... in that order, each
text running to the next label (the last to the end of the text).
"""

from __future__ import annotations

import re

MATHVERSE = re.compile(r"(?m)^[ \t]*(?P<letter>[A-H])[ \t]*[:.：][ \t]*")
"""`...\\nChoices:\\nA:50°\\nB:60°\\nC:65°\\nD:90°`: one option per line."""

MMSTAR = re.compile(r"(?:\bOptions:\s*|,\s*)(?P<letter>[A-H]):\s*")
"""`...\\nOptions: A: red, B: green, C: blue, D: black`: comma-separated after `Options:`."""

WEMATH = re.compile(r"(?:^|[;；]\s*)(?P<letter>[A-H])[.．、:：]\s*")
"""`A. 6; B. 8; C. 12; D. 24` (the `option` column): semicolon-separated."""

LOGICVISTA = re.compile(r"(?:\((?=[A-J]\))|(?<![^\s.,;:?!])(?=[A-J]\)))(?P<letter>[A-J])\)\s*")
"""`... Select from A, B, and C. (A) True (B)False (C)Insufficient Information` or `A) 10 B) 12`."""

_GOLD_LETTERS = re.compile(r"^\s*[A-Z](?:\s*[,;]?\s*[A-Z])*\s*$")


def embedded_options(text: str, label: re.Pattern[str], gold: str | None = None) -> tuple[str, ...] | None:
    """The option texts printed in `text` in the layout `label`, or None.

    None when there are fewer than two options, when an option has no text (its picture is in the
    image, as in LogicVista's "(A) (B) (C) (D)"), or when `gold` names a letter outside the options
    or is not letters at all (then the parse cannot be trusted to map text to letters).
    """
    marks = list(label.finditer(text))
    for first in reversed(range(len(marks))):
        if marks[first]["letter"] != "A":
            continue
        chain = [marks[first]]
        for mark in marks[first + 1:]:
            if mark.start() >= chain[-1].end() and mark["letter"] == chr(ord(chain[-1]["letter"]) + 1):
                chain.append(mark)
        if len(chain) < 2:
            continue
        ends = [mark.start() for mark in chain[1:]] + [len(text)]
        texts = tuple(text[mark.end():end].strip().rstrip(",;；").strip() for mark, end in zip(chain, ends, strict=True))
        if not all(texts) or (gold is not None and not _gold_within(gold, len(texts))):
            return None
        return texts
    return None


def _gold_within(gold: str, count: int) -> bool:
    if not _GOLD_LETTERS.match(gold):
        return False
    return all(ord(letter) - ord("A") < count for letter in re.findall(r"[A-Z]", gold))
