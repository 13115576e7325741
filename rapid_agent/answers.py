"""Answer extraction and grading for the RAPID reasoner (rapid.md §4) and the eval harness.

`extract_answer` pulls the final answer out of a model's output; it never guesses: it takes an
answer only where a marker says it is the answer (``<answer>`` tags, a JSON ``"short answer"``, the
last ``\\boxed{}``, "Answer: X" / "the answer is X", a concluding "the value of ... is X."), where a
benchmark's own scorer reads an option (MATH-V's letter conventions, MMMU's option texts), or where
the whole output is an answer. `grade` compares an answer with one or several accepted golds by a
benchmark's conventions (option letters/texts, numbers with units/percent/precision/tolerance,
integers, lists, plain text, LaTeX via ``math_verify``; quantities in other units of length, mass or
time via `rapid_agent.units`); `grade_output` does both and is the one
verdict path of the library and the eval harness. Work is linear in the output length, and only its
last `MAX_EXAMINED_CHARS` characters are examined. Nothing raises on odd model output.

**The answer contract.** The graph's ``answer`` (node ``reason``) and the eval harness's prediction
(``evals.scoring.grade_sample``, through `grade_output`; ``prediction`` in ``samples.jsonl``) are one
call, ``extract_answer(output, options, truncated=truncated)``, on the same ``output``: the graph's
``reasoning`` (a reasoning parser's separate thinking is prefixed to it as a closed ``<think>`` block,
which extraction drops), with the graph's ``truncated`` (cut off inside ``<think>``, or by the token
limit before a closed ``\\boxed{}``: no answer). So for the same output and the same options both
are equal (``tests/test_answer_contract.py``). The options differ by design: the graph reads with
the options it shows the reasoner (its input ``options``), the harness with the sample's options,
which also hold the options a benchmark prints inside its question (MathVerse, MMStar, LogicVista,
We-Math; the graph gets those as question text only), so an answer written as such an option's text
is still found and graded as its letter.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Literal, NamedTuple, get_args

from math_verify import parse, verify
from math_verify.errors import TimeoutException
from pydantic import BaseModel, ConfigDict

from rapid_agent.errors import InputError
from rapid_agent.units import parse_unit

__all__ = [
    "MAX_EXAMINED_CHARS",
    "AnswerType",
    "IntegerMatch",
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
IntegerMatch = Literal["exact", "truncate"]
"""How ``answer_type="integer"`` compares: the exact integer, or MathVista's ``int(float(x))``."""

MAX_EXAMINED_CHARS = 8000
"""Only this many trailing characters of an output (after reasoning blocks) are searched for the answer."""
MAX_ANSWER_CHARS = 300
"""A marked answer longer than this is a sentence or a derivation, not an answer."""
MAX_BOXES = 10
"""At most this many boxes joined by "and"/commas form one list answer."""
_MATH_VERIFY_TIMEOUT_S = 5

Gold = str | int | float
Prediction = str | int | float | Decimal | Fraction | None


class UnknownAnswerTypeError(InputError):
    """Raised by `grade` for an ``answer_type`` that is not one of `AnswerType`."""


class Verdict(BaseModel):
    """Outcome of grading one prediction against the gold answer(s) (``gold``: the one that matched,
    else the first). ``answer`` is the prediction as given (by `grade_output`: as extracted, see the
    answer contract above), ``prediction`` its normalised form ("(B) 8/11" -> "B")."""

    model_config = ConfigDict(frozen=True)

    correct: bool
    prediction: str | None
    gold: str
    method: str
    answer: str | None = None


# --------------------------------------------------------------------------- extraction


def strip_think(text: str) -> str:
    """Remove ``<think>...</think>`` blocks, a leading unopened block ending in ``</think>`` and an
    unclosed trailing ``<think>`` (truncated reasoning), returning what remains, stripped.

    One left-to-right pass of substring searches: linear in ``len(text)``.
    """
    low = text.lower()
    first_open, first_close = low.find("<think>"), low.find("</think>")
    pos = first_close + len("</think>") if first_close != -1 and (first_open == -1 or first_close < first_open) else 0
    kept: list[str] = []
    while True:
        start = low.find("<think>", pos)
        if start == -1:
            kept.append(text[pos:])
            break
        kept.append(text[pos:start])
        end = low.find("</think>", start + len("<think>"))
        if end == -1:  # truncated reasoning: no answer follows it
            break
        pos = end + len("</think>")
    body = "".join(kept)
    stray = body.lower().rfind("</think>")  # a second closing tag: keep what follows the last one
    return (body[stray + len("</think>") :] if stray != -1 else body).strip()


def _braced(text: str, start: int) -> int | None:
    """Index of the brace closing the group that opens at ``text[start] == '{'``; None if unbalanced."""
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
                return i
        i += 1
    return None


_BOXED = re.compile(r"\\(?:boxed|fbox)\b")
_BOX_JOIN = re.compile(r"(?:\s|\$|,|;|&|\\quad|\\qquad|\\text\{\s*(?:and|or)?\s*\}|\band\b|\\[,;! ])*")


def _boxes(text: str) -> list[str] | None:
    """Contents of the last box and of the boxes joined to it by mere separators ("\\boxed{-2} and
    \\boxed{1}"), in order; None when there is no box or the last one is unclosed."""
    found: list[str] = []
    next_start = len(text)
    for match in reversed(list(_BOXED.finditer(text))):
        content, end = _box_content(text, match.end())
        if content is None or end is None:
            if not found:
                return None
            break
        if found and (end > next_start or not _BOX_JOIN.fullmatch(text, end, next_start)):
            break
        if len(found) == MAX_BOXES:
            return None  # a run of boxes is not an answer list
        found.append(content)
        next_start = match.start()
    return list(reversed(found)) or None


_BARE_TOKEN = re.compile(r"\s+([^\s$]+)")


def _box_content(text: str, after: int) -> tuple[str | None, int | None]:
    """(content, end index) of the box whose macro ends at ``after``: ``{...}`` or one bare token."""
    i = after
    while i < len(text) and text[i].isspace():
        i += 1
    if i < len(text) and text[i] == "{":
        close = _braced(text, i)
        return (None, None) if close is None else (text[i + 1 : close], close + 1)
    token = _BARE_TOKEN.match(text, after)
    return (token.group(1), token.end()) if token else (None, None)


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}`` in ``text`` (nested braces allowed).

    ``\\boxed 5`` (no braces) yields ``"5"``. Returns None when there is no box or the last one is
    unclosed (truncated output).
    """
    for match in reversed(list(_BOXED.finditer(text))):
        return _box_content(text, match.end())[0]
    return None


_ANSWER_TAG = re.compile(r"<answer>(?P<ans>.*?)</answer>", re.DOTALL | re.IGNORECASE)
_SHORT_ANSWER = re.compile(r"[\"']short answer[\"']\s*:\s*\"(?P<ans>(?:[^\"\\\n]|\\.){0,300})\"", re.IGNORECASE)
_MARKER = re.compile(
    r"(?:\b(?:(?:final|correct|right|best)\s+)?answer(?:\s+(?:to|for)\s+(?:this|the)\s+(?:question|problem))?"
    r"|\b(?:correct|right|best|final|most\s+appropriate)\s+(?:option|choice)"
    r"|答案)"
    r"[ \t]*(?:(?:is|should\s+be|would\s+be|will\s+be)\b|[:：=是为])[ \t]*[:：]?[ \t]*(?=(?P<ans>[^\n]*))",
    re.IGNORECASE,
)
_BARE_MARKER = re.compile(r"(?im)^[ \t*#]*(?:final\s+)?answer\b[ \t]*(?P<ans>[^:：\s][^\n]*)$")
_VERB = (
    r"(?:(?:is|are|equals|would\s+be|will\s+be|should\s+be)\b|=)"  # \b: "the area is" has no verb "are"
    r"(?:\s+(?:approximately|about|roughly|therefore|thus|hence|then|clearly))?"
)
_CONCLUSION = re.compile(
    r"^(?:(?:so|thus|therefore|hence|finally|overall|in\s+conclusion)\b[\s,:]*)?"
    rf"(?P<subject>[^\n]{{0,120}}?)\s+{_VERB}\s*:?\s*(?P<ans>[^\n]+)$",
    re.IGNORECASE,
)
_LEAD_IN = re.compile(rf"^(?P<subject>[^\n]{{0,200}}?)\s+{_VERB}\s*:$", re.IGNORECASE)
_CLAUSE = re.compile(r",\s+(?:which|so|since|because|as|meaning)\b", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?。])\s+(?=\S)")
_NEGATION = re.compile(r"\b(?:not|no|never|neither|nor|cannot|can't|isn't|aren't)\b", re.IGNORECASE)
_SIGN_OFF = re.compile(
    r"(?:I\s+hope\b|hope\s+this\s+helps|let\s+me\s+know\b|please\s+let\s+me\s+know|feel\s+free\b|is\s+there\s+anything\b"
    r"|do\s+you\s+have\s+(?:any\s+)?other\s+questions)",
    re.IGNORECASE,
)
_LONE_LETTER = re.compile(r"^\W*\(?(?P<l>[A-Z])\)?[.:)]?\W*$")


def _unwrap(ans: str) -> str:
    """Answer text without markdown emphasis, math delimiters, a trailing full stop or a box."""
    ans = ans.strip().replace("**", "").strip("*_ \t").translate(_FULL_WIDTH)
    boxes = _boxes(ans) if "\\boxed" in ans or "\\fbox" in ans else None
    if boxes is not None:
        return ", ".join(b.strip() for b in boxes)
    ans = ans.rstrip(" .。")
    if ans.replace("\\$", "").count("$") % 2:  # a lone "$": currency ("$1.45", "1.45$") or "Answer: $LETTER"
        ans = re.sub(r"(?<!\\)\$(?=\d|\.\d|\(?[A-Z]\)?(?:\W|$))|(?<=\d)\s?\$(?=\s|$)", "", ans, count=1)
    for pattern in (r"\$\$(.+)\$\$", r"\$(.+)\$", r"\\\((.+)\\\)", r"\\\[(.+)\\\]", r"`(.+)`", r'"(.+)"'):
        if (inner := re.fullmatch(pattern, ans, re.DOTALL)) and "$" not in inner.group(1).replace("\\$", ""):
            ans = inner.group(1).strip().rstrip(".")
            break
    return ans.strip()


_FULL_WIDTH = str.maketrans({"（": "(", "）": ")", "：": ":", "，": ",", "。": "."})


def _balanced(text: str) -> bool:
    """Braces balanced, and no math delimiter left open or closed on its own."""
    if text.count("\\(") != text.count("\\)") or text.count("\\[") != text.count("\\]"):
        return False
    if text.replace("\\$", "").count("$") % 2:
        return False
    depth = 0
    for ch in text.replace("\\{", "").replace("\\}", ""):
        depth += (ch == "{") - (ch == "}")
        if depth < 0:
            return False
    return depth == 0


_LETTER_FORM = re.compile(
    r"(?:(?:option|choice)\s+)?\(?[A-Z]\)?(?:[.:)]\s*\S.*|\s+\(.+\)|\(.+\))?"
    r"|\(?[A-Z]\)?(?:\s*(?:,|;|/|&|\band\b)\s*\(?[A-Z]\)?)+",
    re.IGNORECASE | re.DOTALL,
)
_FUNCTION_WORDS = frozenset(
    "sin cos tan cot sec csc log ln exp sqrt pi inf infty arcsin arccos arctan sinh cosh tanh max min mod".split()
)


def _is_math(text: str) -> bool:
    """A formula or number: no word of two or more letters outside LaTeX commands and math functions."""
    bare = re.sub(r"\\[A-Za-z]+", " ", text)
    words = [w for w in re.findall(r"[A-Za-z]{2,}", bare) if w.lower() not in _FUNCTION_WORDS]
    return not words and bool(re.search(r"[\dA-Za-z\\]", text))


def _is_answer(ans: str, options: Sequence[str] | None) -> bool:
    """Whether ``ans`` is an answer value rather than a sentence: an option letter (with its text), a
    number with unit, a formula, an option's text, or a short phrase of words."""
    if not ans or len(ans) > MAX_ANSWER_CHARS or "\n" in ans.strip() or not _balanced(ans):
        return False
    if _LETTER_FORM.fullmatch(ans) and re.match(r"\W*(?:(?:option|choice)\s+)?\(?[A-Z]\b", ans, re.IGNORECASE):
        return bool(re.match(r"\W*(?:(?:option|choice)\s+)?\(?[A-Z](?![a-z])", ans, re.IGNORECASE)) and (
            not re.match(r"\W*[a-z]\b", ans) or len(ans.strip(" .()")) == 1
        )
    if _plain_number(ans, None) is not None or _is_math(_clean(ans)):
        return True
    if options and any(_norm_text(ans) == _norm_text(opt) for opt in options):
        return True
    words = _clean(ans).split()
    return 0 < len(words) <= 4 and all(re.fullmatch(r"[A-Za-z][A-Za-z'’-]*[.,!?]?", w) for w in words) and not (
        _NEGATION.search(ans)
    )


def _first_sentence(text: str) -> str:
    parts = _SENTENCE_END.split(text.strip(), maxsplit=1)
    return parts[0] if parts else ""


def _concluded(sentence: str, options: Sequence[str] | None) -> str | None:
    """X from a concluding "(So,) the value of bar C is X." when X is an answer value and the
    sentence negates nothing."""
    match = _CONCLUSION.match(sentence.strip().replace("**", ""))
    if not match or _NEGATION.search(match["subject"]) or _NEGATION.search(match["ans"]):
        return None
    for candidate in (match["ans"], _CLAUSE.split(match["ans"], maxsplit=1)[0]):  # "is 0.6, which means ..."
        ans = _unwrap(candidate)
        if _is_answer(ans, options):
            return ans
    return None


def _marked(content: str, options: Sequence[str] | None) -> str | None:
    """The answer a marker introduces: the whole content, its first sentence, or the X of a sentence
    "the largest n is X" that follows it ("Final Answer: The largest $n$ is 34.")."""
    for candidate in (content, _first_sentence(content)):
        ans = _unwrap(candidate)
        if _is_answer(ans, options):
            return ans
    return _concluded(_first_sentence(content), options)


def _last_sentence(body: str) -> str:
    lines = [line for line in body.splitlines() if line.strip()]
    if not lines:
        return ""
    return _SENTENCE_END.split(lines[-1].strip())[-1]


def extract_answer(
    text: str | None, options: Sequence[str] | None = None, *, truncated: bool = False
) -> str | None:
    """Final answer in a model's output, or None when there is none (it never guesses) or the output
    is ``truncated`` (the graph's flag: cut off before its answer; see the answer contract above).

    Reasoning blocks are removed and the last `MAX_EXAMINED_CHARS` characters searched, in order:
    the last ``<answer>...</answer>``; a JSON ``"short answer": "..."`` (DynaMath); the last
    ``\\boxed{}`` (with boxes joined to it by "and"/commas, as a list); the last "Answer: X" / "the
    answer is X" / "the correct option is X" / "Answer $9$" whose X is an answer value; with
    ``options``, a last line "D. <option D's text>", a last sentence ending with an option letter
    (MATH-V) or with one option's text (MMMU); a concluding last sentence "the value of bar C is X.";
    for multiple choice a lone option letter on the last line ("(B)", "B."; within range when
    ``options`` are given); the whole output when it is an answer value ("14", "(B) 8/11", "4 cm").
    With ``options``, a first line that is an option letter alone (MATH-V) answers unless the rest
    names another option (then there is no answer).
    """
    if not text or truncated:
        return None
    stripped = strip_think(text)
    body = stripped[-MAX_EXAMINED_CHARS:]
    if not body:
        return None
    answer = _tail_answer(body, options)
    lead = _leading_letter(stripped, options) if options else None
    if lead is None or answer is None:
        return answer or lead
    named = _choice_set(answer, options, _Config(), compact=False)
    return lead if named is None else answer if named == {lead} else None  # two different options: no answer


def _tail_answer(body: str, options: Sequence[str] | None) -> str | None:
    """The answer the end of ``body`` gives (see `extract_answer`), or None."""
    tag_start = body.lower().rfind("<answer>")
    if tag_start != -1 and (tag := _ANSWER_TAG.match(body, tag_start)) and (ans := _marked(tag["ans"], options)):
        return ans
    if short := list(_SHORT_ANSWER.finditer(body)):
        try:
            value = str(json.loads(f'"{short[-1]["ans"]}"'))
        except json.JSONDecodeError:
            value = short[-1]["ans"]
        if ans := _marked(value, options):
            return ans
    flat = _WRAPPERS.sub(r"\1", body.replace("**", ""))
    marker_at, marked = _last_marker(flat, options)
    box_at = max((m.start() for m in _BOXED.finditer(flat)), default=-1)
    if box_at > marker_at:
        boxes = _boxes(flat)
        if boxes is None or not all(b.strip() for b in boxes):
            return None  # an unclosed or empty last box: truncated output
        return ", ".join(b.strip() for b in boxes)
    if marked is not None:
        return marked
    lines = [line.strip() for line in flat.splitlines() if line.strip()]
    while lines and _SIGN_OFF.match(lines[-1]):  # "I hope this helps! Let me know ..."
        lines.pop()
    flat = "\n".join(lines)
    last = _last_sentence(flat)
    if options and lines and (
        ans := _option_line(lines[-1], options) or _ending_letter(last, options) or _option_named(last, options)
    ):
        return ans
    if ans := _concluded(last, options):
        return ans
    if len(lines) > 1 and (lead := _LEAD_IN.match(_last_sentence(lines[-2]))) and not _NEGATION.search(lead["subject"]):
        ans = _unwrap(lines[-1])  # "... the range is:\n\n(-2, 1]"
        if _is_answer(ans, options):
            return ans
    lone = _LONE_LETTER.match(lines[-1]) if lines else None
    if lone and (not options or ord(lone["l"]) - ord("A") < len(options)):
        return lone["l"]
    whole = _unwrap(flat)
    return whole if len(lines) == 1 and len(whole) <= 100 and _is_answer(whole, options) else None


# --------------------------------------------------------------------------- option conventions

_LEADING_LETTER = re.compile(r"\(?(?P<l>[A-Z])\)?[.:]?(?:[ \t]+\(?(?P=l)\)?)?[ \t]*\r?\n")
_ENDING_LETTER = re.compile(r"(?P<pre>.*\S)\s+\(?(?P<l>[A-Z])\)?\.")
_NAMED_THING = re.compile(
    r"\b(?:points?|vertex|vertices|lines?|segments?|sides?|angles?|corners?|edges?|nodes?|rays?|arcs?|cent(?:er|re))"
    r"\s+\(?[A-Z]\)?\.$",
    re.IGNORECASE,
)
_OPTION_LINE = re.compile(r"\(?(?P<l>[A-Z])\)?[.:)]\s*(?P<text>\S.*)")
_HEDGE = re.compile(
    r"\b(?:either|whether|if|unless|except|unlike|instead|rather\s+than|rules?\s+out|compared?\s+(?:to|with))\b",
    re.IGNORECASE,
)
_TRAILING_ASIDE = re.compile(r"\s*\([^()]*\)$")


def _in_range(letter: str, options: Sequence[str]) -> bool:
    return ord(letter) - ord("A") < len(options)


def _leading_letter(text: str, options: Sequence[str]) -> str | None:
    """MATH-V's convention: an output whose first line is an option letter alone ("(D)\n\nExplanation:
    ...", "D\n...", "(D) D\n...") answers with that letter."""
    match = _LEADING_LETTER.match(text)
    return match["l"] if match and _in_range(match["l"], options) else None


def _ending_letter(sentence: str, options: Sequence[str]) -> str | None:
    """MATH-V's convention: a last sentence ending with an option letter after a space and before a
    final full stop ("..., so we round down to get D.") names that option, unless it negates, asks,
    or names a point, side or angle ("... at point D.")."""
    match = _ENDING_LETTER.fullmatch(sentence.strip())
    if not match or not _in_range(match["l"], options) or _NEGATION.search(sentence) or _NAMED_THING.search(sentence):
        return None
    return match["l"]


def _option_line(line: str, options: Sequence[str]) -> str | None:
    """A last line giving an option's letter and that option's own text ("D. a house is a machine for
    living"), read as a whole before a sentence inside the option's text is."""
    match = _OPTION_LINE.fullmatch(_unwrap(line))
    if not match or not _in_range(match["l"], options):
        return None
    return match.group(0) if _norm_text(match["text"]) == _norm_text(options[ord(match["l"]) - ord("A")]) else None


def _option_named(sentence: str, options: Sequence[str]) -> str | None:
    """MMMU's parser: an option's text written in a sentence names that option. Taken only from a
    last sentence that ends with the text of one option of words ("The painting of the white cliffs
    was created by Georges Seurat."), mentions no other option, and neither negates, hedges nor asks."""
    text = _clean(sentence).rstrip(" .!。\"'”’")
    if not text or text.endswith("?") or _NEGATION.search(text) or _HEDGE.search(text):
        return None
    low = text.lower()
    texts = {_clean(o).rstrip(" .").lower() for o in options if re.search(r"[A-Za-z]{2,}", o) and not _is_math(_clean(o))}
    found = None
    for tail in (low, _TRAILING_ASIDE.sub("", low)):  # "... a vaulted ceiling (option A)."
        ends = [t for t in texts if t and re.search(rf"(?<!\w){re.escape(t)}$", tail)]
        if ends:
            found = max(ends, key=len)
            break
    if found is None:
        return None
    rest = low[: low.rfind(found)]
    if any(re.search(rf"(?<!\w){re.escape(t)}(?!\w)", rest) for t in texts if t not in found):
        return None  # "It is either an IS curve or a Phillips curve."
    start = low.rfind(found)
    return text[start : start + len(found)]


def _last_marker(text: str, options: Sequence[str] | None) -> tuple[int, str | None]:
    """(position, answer) of the last "Answer: X"-style marker whose X is an answer value; (-1, None)."""
    found = (-1, None)
    for pattern in (_MARKER, _BARE_MARKER):
        for match in reversed(list(pattern.finditer(text))):
            if match.start() <= found[0]:
                break
            content = match["ans"].strip() or _next_line(text, match.end())
            if ans := _marked(content, options):
                found = (match.start(), ans)
                break
    return found


def _next_line(text: str, pos: int) -> str:
    """The next non-empty line after ``pos`` ("The answer is:\\n\\n(B) 8/11")."""
    for line in text[pos : pos + 2000].splitlines():
        if line.strip():
            return line.strip()
    return ""


# --------------------------------------------------------------------------- normalisation

_WRAPPERS = re.compile(
    r"\\(?:text|textnormal|textbf|textit|textrm|textsf|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}"
)
_THOUSANDS = re.compile(r"(?<=\d)(?:\{,\}|,\\!\s*|\\,|\\!|\\ |[\u2009\u202f])(?=\d{3}(?!\d))")
_CURRENCY = re.compile(r"[€£¥₹]")
_SPACING = re.compile(r"\\left|\\right|\\[,;:! ]|~")
_DEGREE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|\\degree|°")
_NUM = r"(?:\d+(?:,\d{3})+(?:\.\d*)?|\d{1,3}(?: \d{3})+(?!\d)(?:\.\d*)?|\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_VALUE = re.compile(
    rf"(?P<sign>[-+]?)\s*(?:\\frac\{{(?P<fn>{_NUM})\}}\{{(?P<fd>{_NUM})\}}|(?P<n>{_NUM})(?:\s*/\s*(?P<d>{_NUM}))?)"
)
_POWER = r"(?:\^\{?-?\d\}?|[²³])?"
_UNIT_WORD = rf"(?!pi\b|or\b|and\b|to\b|not\b)[A-Za-zµμΩ]{{2,}}\.?{_POWER}(?:\s*/\s*[A-Za-z]+{_POWER})?"
_UNIT = re.compile(rf"(?:\s*{_UNIT_WORD}|\s+[A-Za-zµμΩ]{_POWER}(?:/[A-Za-z]+{_POWER})?){{0,3}}\s*")
_ASSIGNMENT = re.compile(r"^\\?[A-Za-z]\w*(?:_\{?\w+\}?)?(?:\([A-Za-z]\))?\s*=\s*(?=\S)")


def _clean(text: str) -> str:
    """Drop LaTeX/markdown decoration: ``\\$`` and ``$``, ``\\text{}`` wrappers, LaTeX thousands
    separators (``1{,}000``, ``1,\\!000``, ``1\\,000``), spacing macros, ``**``."""
    text = text.replace("\\$", "").replace("$", "").replace("**", "")
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("−", "-")
    text = _THOUSANDS.sub("", text)
    for _ in range(3):
        text = _WRAPPERS.sub(r" \1", text)
    text = _SPACING.sub(" ", text)
    return re.sub(r"\s+", " ", text).strip()


def _norm_text(text: str) -> str:
    """Case/whitespace/edge-punctuation-insensitive form for exact text comparison."""
    text = _clean(text).lower()
    text = re.sub(r"\s*([^\w\s])\s*", r"\1", text)
    return text.strip(" .,;:!?\"'`*")


class _Number(NamedTuple):
    value: float
    percent: bool
    unit: str
    """The unit written after the number ("" for none)."""


def _plain_number(text: str, unit: str | None) -> _Number | None:
    """A plain number with optional sign, currency symbol, unit, degree sign or percent; ``unit`` (a
    benchmark's unit of its answers) is dropped where it stands as a whole word."""
    text = _ASSIGNMENT.sub("", _clean(text))
    if unit and unit.strip():
        text = re.sub(rf"(?<![A-Za-z]){re.escape(unit.strip())}(?![A-Za-z])", " ", text)
    text = _CURRENCY.sub(" ", _DEGREE.sub(" ", text)).strip()
    is_percent = bool(re.search(r"\\?%$", text))
    text = re.sub(r"\\?%$", "", text).strip()
    match = _VALUE.match(text)
    if not match or not _UNIT.fullmatch(text, match.end()):
        return None
    num, den = (match["fn"], match["fd"]) if match["fn"] else (match["n"], match["d"] or "1")
    try:
        value = float(re.sub("[, ]", "", num)) / float(re.sub("[, ]", "", den))
    except (ValueError, ZeroDivisionError):
        return None
    return _Number(-value if match["sign"] == "-" else value, is_percent, text[match.end() :].strip())


def _numbers(text: str, cfg: _Config, symbolic: bool) -> tuple[list[float], str] | None:
    """(candidate numeric values, unit) of ``text``: two values for a percent with
    ``percent_as_fraction``; with ``symbolic``, closed forms like ``2\\pi`` are evaluated through
    math_verify."""
    plain = _plain_number(text, cfg.unit)
    if plain is not None:
        values = [plain.value, plain.value / 100] if plain.percent and cfg.percent_as_fraction else [plain.value]
        return values, plain.unit
    if not symbolic or not _is_math(_clean(text)):
        return None
    for item in _mv_parse(text):
        if not isinstance(item, str) and getattr(item, "is_number", False):
            try:
                return [float(item)], ""
            except (TypeError, ValueError, OverflowError):
                return None
    return None


def _unit_scale(pred_unit: str, gold_unit: str) -> float | None:
    """Factor converting a value in the prediction's unit into the gold's ("cm" -> "m": 0.01): 1
    unless both are units of `rapid_agent.units`; None for units of different dimensions."""
    pred, gold = parse_unit(pred_unit), parse_unit(gold_unit)
    return 1.0 if pred is None or gold is None else pred.factor_to(gold)


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
    """Symbolic equivalence via math_verify, only between formulas (never read a sentence's last
    number as its value); any failure or timeout counts as not equal."""
    if max(len(pred), len(gold)) > MAX_ANSWER_CHARS or not (_is_math(_clean(pred)) and _is_math(_clean(gold))):
        return False
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
    tolerance: float | None = None
    unit: str | None = None
    percent_as_fraction: bool = False
    integer_match: IntegerMatch = "exact"


def _close(a: float, b: float, cfg: _Config, integer: bool) -> bool:
    """``b`` is the gold. Integers: exact, or MathVista's truncation of the prediction; precision:
    both rounded; tolerance: absolute; otherwise relative 1e-6."""
    if not (math.isfinite(a) and math.isfinite(b)):
        return a == b
    if integer:
        return (math.trunc(a) if cfg.integer_match == "truncate" else a) == b and b == math.trunc(b)
    if cfg.precision is not None:
        return math.isclose(round(a, cfg.precision), round(b, cfg.precision), rel_tol=0, abs_tol=1e-12)
    if cfg.tolerance is not None:
        return abs(a - b) <= cfg.tolerance + 1e-12
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=0.0 if b else 1e-12)  # no absolute floor: 1e-19 != 3e-19


def _numeric_equal(
    pred: str, gold: str, cfg: _Config, integer: bool = False, symbolic: bool = True
) -> bool | None:
    """Numeric comparison, in the gold's unit (its own, else the benchmark's ``unit``) where both
    sides carry a unit of length, mass or time; None when either side is not a number."""
    pred_numbers, gold_numbers = _numbers(pred, cfg, symbolic), _numbers(gold, cfg, symbolic)
    if pred_numbers is None or gold_numbers is None:
        return None
    (pred_values, pred_unit), (gold_values, gold_unit) = pred_numbers, gold_numbers
    scale = _unit_scale(pred_unit, gold_unit or cfg.unit or "")
    return scale is not None and any(_close(p * scale, g, cfg, integer) for p in pred_values for g in gold_values)


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
_ONE_LETTER = re.compile(r"\(?(?P<l>[A-Z])\)?(?:[.:)]\s*.*|\s+\(.*\)|\(.*\)|\s*)", re.DOTALL)
_LETTER_LIST = re.compile(r"\(?[A-Z]\)?(?:\s*(?:,|;|/|&|\band\b|\s)\s*\(?[A-Z]\)?)+")


def _letters(text: str, n_options: int | None, compact: bool) -> frozenset[str] | None:
    """Option letters named by ``text``: "(B)", "B.", "Option B", "B. 4 cm", "A, C", "AC" (compact)."""
    text = _LETTER_PREFIX.sub("", _clean(text).translate(_FULL_WIDTH)).strip()
    if re.fullmatch(r"\(?[a-z]\)?\.?", text):
        text = text.upper()
    if match := _ONE_LETTER.fullmatch(text):
        letters = frozenset(match["l"])
    elif _LETTER_LIST.fullmatch(text):
        letters = frozenset(re.findall(r"\b[A-Z]\b", text))
    elif compact and re.fullmatch(r"[A-Z]{2,}", text) and len(set(text)) == len(text):
        letters = frozenset(text)
    else:
        return None
    if n_options is not None and any(ord(c) - ord("A") >= n_options for c in letters):
        return None
    return letters


def _is_letter_gold(gold: str) -> bool:
    """Gold like "B" or "A, C" (MMStar/WeMath/LogicVista store letters)."""
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


def _text(value: object, what: str) -> str:
    """A prediction or gold as text: strings as they are, numbers by their shortest form."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, Fraction)):
        raise InputError(f"{what} must be a string or a number, not {type(value).__name__}")
    return str(value)


def _grade_one(pred: str, gold: str, options: Sequence[str] | None, answer_type: str, cfg: _Config) -> Verdict:
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
        exact = _norm_text(pred) == _norm_text(gold)
        correct, method = (True, "exact") if exact else (_math_equal(pred, gold), "math_verify")
    elif answer_type == "list":
        correct, method = _grade_list(pred, gold, cfg), "list"
    else:
        correct, method = _grade_value(pred, gold, cfg)
    return Verdict(correct=correct, prediction=pred, gold=gold, method=method)


def grade(
    prediction: Prediction,
    gold: Gold | Sequence[Gold],
    *,
    options: Sequence[str] | None = None,
    answer_type: AnswerType | None = "auto",
    precision: int | None = None,
    tolerance: float | None = None,
    unit: str | None = None,
    percent_as_fraction: bool = False,
    integer_match: IntegerMatch = "exact",
) -> Verdict:
    """Grade an already extracted ``prediction`` (text or number) against ``gold`` (one accepted
    answer, or a list of accepted answers: correct when any matches).

    ``options`` are the option texts (letters A.. by position); gold may be a letter, several letters
    ("A, C"; set comparison) or an option text. ``precision`` (decimal places) rounds both sides;
    ``tolerance`` is an absolute bound (DynaMath: 1e-3); otherwise numbers match to 1e-6 relative.
    ``answer_type="integer"`` wants the exact integer (``integer_match="truncate"``: MathVista's
    ``int(float(x))``). ``answer_type="auto"`` (or None) picks multiple choice when options are given
    or gold is a letter, else exact text, numbers, then math_verify. Never raises on odd predictions;
    raises `UnknownAnswerTypeError` for an unknown ``answer_type`` and `InputError` for a gold or
    prediction that is neither text nor a number.
    """
    answer_type = "auto" if answer_type is None else answer_type
    if answer_type not in ANSWER_TYPES:
        raise UnknownAnswerTypeError(
            f"unknown answer_type {answer_type!r}; expected one of {', '.join(ANSWER_TYPES)}"
        )
    golds = [gold] if isinstance(gold, (str, int, float, Decimal, Fraction)) else list(gold)
    golds = [_text(g, "gold").strip() for g in golds]
    if not golds or not all(golds):
        raise InputError("gold must be a non-empty answer or a non-empty list of non-empty answers")
    answer = None if prediction is None else _text(prediction, "prediction")
    pred = None if answer is None else answer.strip()
    if not pred or not _clean(pred):
        return Verdict(correct=False, prediction=None, gold=golds[0], method="no_answer", answer=answer)
    cfg = _Config(
        precision=None if precision is None else int(precision),
        tolerance=tolerance,
        unit=unit,
        percent_as_fraction=percent_as_fraction,
        integer_match=integer_match,
    )
    verdicts = [_grade_one(pred, g, options, answer_type, cfg) for g in golds]
    return next((v for v in verdicts if v.correct), verdicts[0]).model_copy(update={"answer": answer})


def grade_output(
    output: str | None,
    gold: Gold | Sequence[Gold],
    *,
    options: Sequence[str] | None = None,
    answer_type: AnswerType | None = "auto",
    precision: int | None = None,
    tolerance: float | None = None,
    unit: str | None = None,
    percent_as_fraction: bool = False,
    integer_match: IntegerMatch = "exact",
    truncated: bool = False,
) -> Verdict:
    """`extract_answer` from a raw model ``output`` (using ``options`` and ``truncated``), then `grade`
    it: the one verdict path of the library and the eval harness."""
    return grade(
        extract_answer(output, options, truncated=truncated),
        gold,
        options=options,
        answer_type=answer_type,
        precision=precision,
        tolerance=tolerance,
        unit=unit,
        percent_as_fraction=percent_as_fraction,
        integer_match=integer_match,
    )
