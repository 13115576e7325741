"""Answer extraction and grading for the RAPID reasoner (rapid.md §4).

`extract_answer` pulls the final answer out of a reasoner's output (last ``\\boxed{}``, then
"Answer: X"-style phrases, then a lone option letter); `grade` compares an extracted answer with a
benchmark's gold answer (option letters/texts, numbers with units/percent/precision, plain text, and
LaTeX via ``math_verify``). Nothing here raises on odd model output: unparseable means "not equal".
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from math_verify import parse, verify
from math_verify.errors import TimeoutException
from pydantic import BaseModel, ConfigDict

__all__ = [
    "AnswerType",
    "UnknownAnswerTypeError",
    "Verdict",
    "extract_answer",
    "grade",
    "grade_output",
    "last_boxed",
    "strip_think",
]

AnswerType = Literal["auto", "multiple_choice", "integer", "float", "text", "math", "list"]
ANSWER_TYPES: tuple[str, ...] = get_args(AnswerType)
_MATH_VERIFY_TIMEOUT_S = 5


class UnknownAnswerTypeError(ValueError):
    """Raised by `grade` for an ``answer_type`` that is not one of `AnswerType`."""


class Verdict(BaseModel):
    """Outcome of grading one prediction against one gold answer."""

    model_config = ConfigDict(frozen=True)

    correct: bool
    prediction: str | None
    gold: str
    method: str


# --------------------------------------------------------------------------- extraction

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_BOXED = re.compile(r"\\(?:boxed|fbox)\b")
_ANSWER_PHRASE = re.compile(
    r"\b(?:final\s+answer|answer)\s*(?:is\b|:|：)\s*(?:[:：]\s*)?(?P<ans>[^\n]*)", re.IGNORECASE
)
_LONE_LETTER = re.compile(r"^\W*\(?(?P<l>[A-Z])\)?[.:)]?\W*$")


def strip_think(text: str) -> str:
    """Remove ``<think>...</think>`` blocks, a leading unopened block ending in ``</think>`` and an
    unclosed trailing ``<think>`` (truncated reasoning), returning what remains, stripped."""
    text = _THINK_BLOCK.sub("", text)
    low = text.lower()
    if "</think>" in low:  # reasoning whose opening tag was in the prompt
        text = text[low.rindex("</think>") + len("</think>") :]
    low = text.lower()
    if "<think>" in low:  # truncated reasoning: no answer follows it
        text = text[: low.index("<think>")]
    return text.strip()


def _braced(text: str, start: int) -> str | None:
    """Content of the brace group opening at ``text[start] == '{'``; None if unbalanced."""
    depth, i = 0, start
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
        i += 1
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}`` in ``text`` (nested braces allowed).

    ``\\boxed 5`` (no braces) yields ``"5"``. Returns None when there is no box or the last one is
    unclosed (truncated output).
    """
    matches = list(_BOXED.finditer(text))
    if not matches:
        return None
    rest_start = matches[-1].end()
    rest = text[rest_start:]
    stripped = rest.lstrip()
    if stripped.startswith("{"):
        return _braced(text, rest_start + len(rest) - len(stripped))
    token = re.match(r"\s+([^\s$]+)", rest)
    return token.group(1) if token else None


def _clean_phrase(ans: str) -> str:
    ans = ans.strip().strip("*").strip()
    boxed = last_boxed(ans)
    if boxed is not None:
        return boxed.strip()
    inline = re.fullmatch(r"\$+(.+?)\$+\.?", ans) or re.fullmatch(r"\\\((.+?)\\\)\.?", ans)
    if inline:
        ans = inline.group(1)
    return ans.strip().rstrip(".").strip()


def extract_answer(text: str | None, options: Sequence[str] | None = None) -> str | None:
    """Final answer in a reasoner's output, or None when there is none (it never guesses).

    Order: think blocks removed; the last ``\\boxed{}``; the last "Answer: X" / "the answer is X" /
    "Final answer: X" phrase; for multiple choice, a lone option letter on the last line ("(B)",
    "B.", "B"; within range when ``options`` are given).
    """
    if not text:
        return None
    body = strip_think(text)
    boxed = last_boxed(body)
    if boxed is not None and boxed.strip():
        return boxed.strip()
    for match in reversed(list(_ANSWER_PHRASE.finditer(body.replace("**", "")))):
        ans = _clean_phrase(match.group("ans"))
        if ans:
            return ans
    lines = [line for line in body.splitlines() if line.strip()]
    lone = _LONE_LETTER.match(lines[-1].replace("**", "")) if lines else None
    if lone and (not options or ord(lone["l"]) - ord("A") < len(options)):
        return lone["l"]
    return None


# --------------------------------------------------------------------------- normalisation

_WRAPPERS = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_SPACING = re.compile(r"\\left|\\right|\\[,;:! ]|~")
_DEGREE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|\\degree|°")
_NUM = r"(?:\d+(?:,\d{3})+(?:\.\d*)?|\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_VALUE = re.compile(
    rf"(?P<sign>[-+]?)\s*(?:\\frac\{{(?P<fn>{_NUM})\}}\{{(?P<fd>{_NUM})\}}|(?P<n>{_NUM})(?:\s*/\s*(?P<d>{_NUM}))?)"
)
_POWER = r"(?:\^\{?-?\d\}?|[²³])?"
_UNIT_WORD = rf"(?!pi\b)[A-Za-zµμΩ]{{2,}}\.?{_POWER}(?:\s*/\s*[A-Za-z]+{_POWER})?"
_UNIT = re.compile(rf"(?:\s*{_UNIT_WORD}|\s+[A-Za-zµμΩ]{_POWER}(?:/[A-Za-z]+{_POWER})?){{0,3}}\s*")
_ASSIGNMENT = re.compile(r"^\\?[A-Za-z]\w*(?:_\{?\w+\}?)?\s*=\s*(?=\S)")


def _clean(text: str) -> str:
    """Drop LaTeX/markdown decoration: ``$``, ``\\text{}`` wrappers, spacing macros, ``**``."""
    text = text.replace("$", "").replace("**", "").replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = text.replace("−", "-")
    for _ in range(3):
        text = _WRAPPERS.sub(r" \1", text)
    text = _SPACING.sub(" ", text)
    return re.sub(r"\s+", " ", text).strip()


def _norm_text(text: str) -> str:
    """Case/whitespace/edge-punctuation-insensitive form for exact text comparison."""
    text = _clean(text).lower()
    text = re.sub(r"\s*([^\w\s])\s*", r"\1", text)
    return text.strip(" .,;:!?\"'`*")


def _plain_number(text: str, unit: str | None) -> tuple[float, bool] | None:
    """(value, is_percent) for a plain number with optional sign, unit, degree sign or percent."""
    text = _ASSIGNMENT.sub("", _clean(text))
    if unit and unit.strip():
        text = text.replace(unit.strip(), " ")
    text = _DEGREE.sub(" ", text).strip()
    is_percent = bool(re.search(r"\\?%$", text))
    text = re.sub(r"\\?%$", "", text).strip()
    match = _VALUE.match(text)
    if not match or not _UNIT.fullmatch(text, match.end()):
        return None
    num, den = (match["fn"], match["fd"]) if match["fn"] else (match["n"], match["d"] or "1")
    try:
        value = float(num.replace(",", "")) / float(den.replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return None
    return (-value if match["sign"] == "-" else value), is_percent


def _numbers(text: str, unit: str | None, percent_as_fraction: bool, symbolic: bool) -> list[float] | None:
    """Candidate numeric values of ``text`` (two for a percent with ``percent_as_fraction``);
    with ``symbolic``, closed forms like ``2\\pi`` are evaluated through math_verify."""
    plain = _plain_number(text, unit)
    if plain is not None:
        value, is_percent = plain
        return [value, value / 100] if is_percent and percent_as_fraction else [value]
    if not symbolic:
        return None
    for item in _mv_parse(text):
        if not isinstance(item, str) and getattr(item, "is_number", False):
            try:
                return [float(item)]
            except (TypeError, ValueError, OverflowError):
                return None
    return None


# --------------------------------------------------------------------------- math_verify


def _mv_timeout() -> int | None:
    """math_verify's timeouts use SIGALRM, which only works on the main thread: disable elsewhere."""
    return _MATH_VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


def _mv_parse(text: str) -> list:
    try:
        return parse("\\boxed{" + _clean(text) + "}", parsing_timeout=_mv_timeout())
    except (Exception, TimeoutException):
        return []


def _math_equal(pred: str, gold: str) -> bool:
    """Symbolic equivalence via math_verify; any failure or timeout counts as not equal."""
    gold_parsed, pred_parsed = _mv_parse(gold), _mv_parse(pred)
    if not gold_parsed or not pred_parsed:
        return False
    try:
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=_mv_timeout()))
    except (Exception, TimeoutException):
        return False


# --------------------------------------------------------------------------- comparison rules


@dataclass(frozen=True)
class _Config:
    precision: int | None = None
    tolerance: float = 1e-6
    unit: str | None = None
    percent_as_fraction: bool = False


def _close(a: float, b: float, cfg: _Config, integer: bool) -> bool:
    if not (math.isfinite(a) and math.isfinite(b)):
        return a == b
    if integer:
        return round(a) == round(b)
    if cfg.precision is not None:
        return math.isclose(round(a, cfg.precision), round(b, cfg.precision), rel_tol=0, abs_tol=1e-12)
    return math.isclose(a, b, rel_tol=cfg.tolerance, abs_tol=cfg.tolerance)


def _numeric_equal(
    pred: str, gold: str, cfg: _Config, integer: bool = False, symbolic: bool = True
) -> bool | None:
    """Numeric comparison; None when either side is not a number."""
    pred_values = _numbers(pred, cfg.unit, cfg.percent_as_fraction, symbolic)
    gold_values = _numbers(gold, cfg.unit, cfg.percent_as_fraction, symbolic)
    if pred_values is None or gold_values is None:
        return None
    return any(_close(p, g, cfg, integer) for p in pred_values for g in gold_values)


def _is_words(text: str) -> bool:
    """Plain words (no digits, no LaTeX): math_verify would read "yes" as the product e*s*y."""
    return bool(re.fullmatch(r"[A-Za-z][A-Za-z\s'.,!?-]*[A-Za-z.!?]", _clean(text)))


def _grade_value(pred: str, gold: str, cfg: _Config) -> tuple[bool, str]:
    """Free-form comparison: exact text, then numbers, then math_verify (not for plain words)."""
    if _norm_text(pred) == _norm_text(gold):
        return True, "exact"
    if _is_words(gold) or _is_words(pred):
        return False, "exact"
    numeric = _numeric_equal(pred, gold, cfg)
    if numeric or (numeric is False and _plain_number(pred, cfg.unit) and _plain_number(gold, cfg.unit)):
        return numeric, "numeric"
    return _math_equal(pred, gold), "math_verify"


def _grade_list(pred: str, gold: str, cfg: _Config) -> bool:
    def items(text: str) -> list[str]:
        return [x for x in re.split(r",\s*|;\s*", _clean(text).strip("[](){} ")) if x.strip()]

    pred_items, gold_items = items(pred), items(gold)
    return len(pred_items) == len(gold_items) and all(
        _grade_value(p, g, cfg)[0] for p, g in zip(pred_items, gold_items, strict=True)
    )


# --------------------------------------------------------------------------- multiple choice

_LETTER_PREFIX = re.compile(
    r"^(?:the\s+)?(?:correct\s+)?(?:option|choice|answer)\s*(?:is\s*)?[:：]?\s*", re.IGNORECASE
)
_ONE_LETTER = re.compile(r"\(?(?P<l>[A-Z])\)?(?:[.:)]\s*.*|\s*)", re.DOTALL)
_LETTER_LIST = re.compile(r"\(?[A-Z]\)?(?:\s*(?:,|;|/|&|\band\b|\s)\s*\(?[A-Z]\)?)+")


def _letters(text: str, n_options: int | None, compact: bool) -> frozenset[str] | None:
    """Option letters named by ``text``: "(B)", "B.", "Option B", "B. 4 cm", "A, C", "AC" (compact)."""
    text = _LETTER_PREFIX.sub("", _clean(text)).strip()
    if re.fullmatch(r"\(?[a-z]\)?\.?", text):
        text = text.upper()
    if match := _ONE_LETTER.fullmatch(text):
        return frozenset(match["l"])
    if _LETTER_LIST.fullmatch(text):
        return frozenset(re.findall(r"\b[A-Z]\b", text))
    if compact and re.fullmatch(r"[A-Z]{2,}", text) and len(set(text)) == len(text):
        if n_options is None or all(ord(c) - ord("A") < n_options for c in text):
            return frozenset(text)
    return None


def _is_letter_gold(gold: str) -> bool:
    """Gold like "B" or "A, C" (MMStar/WeMath/LogicVista store letters without an options list)."""
    return not re.search(r"[a-z]", gold) and _letters(gold, None, compact=False) is not None


def _matching_option(text: str, options: Sequence[str], cfg: _Config, by_value: bool) -> str | None:
    """Letter of the single option whose text equals ``text`` (with ``by_value``: also as a value)."""
    norm = _norm_text(text)
    hits = [i for i, opt in enumerate(options) if _norm_text(opt) == norm]
    if not hits and by_value:
        hits = [i for i, opt in enumerate(options) if not _is_words(opt) and _grade_value(text, opt, cfg)[0]]
    return chr(ord("A") + hits[0]) if len(hits) == 1 else None


def _choice_set(
    text: str, options: Sequence[str] | None, cfg: _Config, compact: bool
) -> frozenset[str] | None:
    """Letters named by ``text``: an option's text first, then letters, then an option's value."""
    if options and (letter := _matching_option(text, options, cfg, by_value=False)):
        return frozenset(letter)
    letters = _letters(text, len(options) if options else None, compact)
    if letters is None and options and (letter := _matching_option(text, options, cfg, by_value=True)):
        return frozenset(letter)
    return letters


def _grade_choice(pred: str, gold: str, options: Sequence[str] | None, cfg: _Config) -> tuple[bool, str, str]:
    """(correct, method, normalised prediction) for a multiple-choice item."""
    gold_set = _choice_set(gold, options, cfg, compact=bool(options))
    if gold_set is None:  # gold is neither a letter nor an option: compare as a value
        pred_letters = _letters(pred, len(options) if options else None, compact=False)
        if options and pred_letters and len(pred_letters) == 1:
            index = ord(next(iter(pred_letters))) - ord("A")
            pred = options[index] if index < len(options) else pred
        correct, method = _grade_value(pred, gold, cfg)
        return correct, method, pred
    pred_set = _choice_set(pred, options, cfg, compact=bool(options) or len(gold_set) > 1)
    shown = ", ".join(sorted(pred_set)) if pred_set else pred
    return pred_set == gold_set, "choice", shown


# --------------------------------------------------------------------------- public grading


def grade(
    prediction: str | None,
    gold: str,
    *,
    options: Sequence[str] | None = None,
    answer_type: AnswerType = "auto",
    precision: int | None = None,
    tolerance: float = 1e-6,
    unit: str | None = None,
    percent_as_fraction: bool = False,
) -> Verdict:
    """Grade an already extracted ``prediction`` against ``gold``.

    ``options`` are the option texts (letters A.. by position); gold may be a letter, several letters
    ("A, C"; set comparison) or an option text. ``precision`` (decimal places) rounds both sides;
    otherwise numbers match within ``tolerance`` (relative, also used as absolute floor).
    ``answer_type="auto"`` picks multiple choice when options are given or gold is a letter,
    else numbers, then exact text, then math_verify. Never raises on odd predictions; raises
    `UnknownAnswerTypeError` for an unknown ``answer_type``.
    """
    if answer_type not in ANSWER_TYPES:
        raise UnknownAnswerTypeError(
            f"unknown answer_type {answer_type!r}; expected one of {', '.join(ANSWER_TYPES)}"
        )
    gold = str(gold).strip()
    if prediction is None or not _clean(prediction):
        return Verdict(correct=False, prediction=None, gold=gold, method="no_answer")
    pred = prediction.strip()
    cfg = _Config(
        precision=None if precision is None else int(precision),
        tolerance=tolerance,
        unit=unit,
        percent_as_fraction=percent_as_fraction,
    )
    is_choice = answer_type == "multiple_choice" or (
        answer_type == "auto" and (bool(options) or _is_letter_gold(gold))
    )
    if is_choice:
        correct, method, pred = _grade_choice(pred, gold, options, cfg)
    elif answer_type in ("integer", "float"):
        correct, method = bool(_numeric_equal(pred, gold, cfg, integer=answer_type == "integer")), "numeric"
    elif answer_type == "text":
        correct, method = _norm_text(pred) == _norm_text(gold), "exact"
    elif answer_type == "math":
        correct, method = (
            (True, "exact")
            if _norm_text(pred) == _norm_text(gold)
            else (_math_equal(pred, gold), "math_verify")
        )
    elif answer_type == "list":
        correct, method = _grade_list(pred, gold, cfg), "list"
    else:
        correct, method = _grade_value(pred, gold, cfg)
    return Verdict(correct=correct, prediction=pred, gold=gold, method=method)


def grade_output(
    output: str | None,
    gold: str,
    *,
    options: Sequence[str] | None = None,
    answer_type: AnswerType = "auto",
    precision: int | None = None,
    tolerance: float = 1e-6,
    unit: str | None = None,
    percent_as_fraction: bool = False,
) -> Verdict:
    """`extract_answer` from a raw reasoner ``output`` (using ``options``), then `grade` it."""
    return grade(
        extract_answer(output, options),
        gold,
        options=options,
        answer_type=answer_type,
        precision=precision,
        tolerance=tolerance,
        unit=unit,
        percent_as_fraction=percent_as_fraction,
    )
