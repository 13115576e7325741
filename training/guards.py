"""Reward-hacking guards for VPO: captions that solve the question instead of describing the image.

The VPO reward is whether the reasoner answers right from the caption, so a captioner can learn to
write the answer into its caption and let the reasoner copy it. Two guards, both TRL reward
functions returning a penalty (``-penalty`` when caught, else 0.0; keep ``penalty=1.0`` and set the
strength with TRL's ``reward_weights``, so ``rewards/<name>/mean`` is minus the caught rate):

* `LeakPenalty` (rule-based, free): `find_leak` finds a caption that states a final answer
  (``\\boxed{}``, ``<answer>`` tags, "the answer is X" / "Answer: X", "option C is correct",
  "Therefore, X = 5", a lone option letter, a caption that is only a value).
* `DescribeCheck` (model-based, optional): a judge chat model asked whether the caption only
  describes the image. Its criteria follow Visionary-R1's caption check (Apache-2.0;
  https://github.com/maifoundations/Visionary-R1, ``src/open_r1/trainer/grpo_trainer_vllm_caption.py``,
  ``SYSTEM_PROMPT``: a text with answers, solutions, problem-solving, explanations, interpretations,
  reasoning steps, conclusions or causal statements is non-descriptive), recast as a yes/no question.
  The RACRO authors' public code (https://github.com/gyhdog99/RACRO2) only tells the captioner
  "Do not try to answer the question." (its caption prompt, which the graph's presets use); no
  model-based describe check was found there.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from rapid_agent.answers import last_boxed, strip_think
from rapid_agent.prompts import format_question
from training.reward import completion_text, row_options

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from rapid_agent.models.spec import ModelResolver

__all__ = [
    "DESCRIBE_CHECK_SYSTEM",
    "DESCRIBE_CHECK_USER",
    "DescribeCheck",
    "LeakPenalty",
    "find_leak",
    "parse_yes_no",
]

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- find_leak

_NUM = r"[-+−]?\$?(?:\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)"
_NUMBER = re.compile(rf"{_NUM}(?:\s*/\s*{_NUM})?\s*(?:%|°|\^\s*\{{?\\circ\}}?)?")
_UNIT_LENIENT = re.compile(r"(?:\s*[A-Za-zµ]{1,12}[²³]?\.?){0,2}")
_UNIT_STRICT = re.compile(r"(?:\s*[A-Za-zµ]{1,3}[²³]?)?")
_LETTER = re.compile(r"\((?P<a>[A-Z])\)(?:\s*\S.*)?|(?P<b>[A-Z])(?:[.:)](?:\s*\S.*)?)?", re.DOTALL)
_LONE_LETTER = re.compile(r"\W*\(?(?P<l>[A-Z])\)?[.:)]?\W*")
_BARE_LETTER = re.compile(r"\(?(?P<l>[A-Z])\)?")
_WRAPPER = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_OPTION_WORD = re.compile(r"^(?:option|choice)\s+(?=\(?[A-Z]\b)", re.IGNORECASE)
_YES_NO = frozenset({"yes", "no", "true", "false"})
_NEGATION = re.compile(
    r"\b(?:not|no|never|neither|nor|cannot|can't|isn't|aren't|none|unclear|unknown)\b", re.I
)
_NOT_A_VALUE = frozenset(
    # a phrase starting with or holding one of these is a sentence or a pointer, not an answer value
    "is are was were be been shows show showing depicts contains has have appears seems can could would should "
    "will must there in on at from below above under inside within to shown written given located provided "
    "displayed printed marked hidden missing blank empty illegible obscured required needed asked what which "
    "how where whether ambiguous depends".split()
)
_END = re.compile(
    r"[,;!?](?:\s|$)|\.(?:\s|$)|\s+(?:because|since|as|which|so|but|while|where)\b", re.IGNORECASE
)

_TAG = re.compile(r"<answer>(?P<v>.*?)</answer>", re.IGNORECASE | re.DOTALL)
_MARKER = re.compile(
    r"(?:\b(?:(?:final|correct|right|best|true)\s+)?answer(?:\s+(?:to|for)\s+(?:this|the)\s+(?:question|problem))?"
    r"|\b(?:correct|right|best|final)\s+(?:option|choice))"
    r"[ \t]*(?:\b(?:is|would\s+be|should\s+be|will\s+be|must\s+be)\b[ \t]*:?|[:=：])[ \t]*(?P<v>[^\n]*)",
    re.IGNORECASE,
)
_OPTION_CORRECT = re.compile(
    r"\b(?:option|choice)\s+\(?(?P<v>[A-Z])\)?\s+(?:is|seems|appears)\s+(?:to\s+be\s+)?(?:the\s+)?"
    r"(?:correct|right|true|answer)\b",
    re.IGNORECASE,
)
_IS_THE_ANSWER = re.compile(
    rf"(?<![\w(])(?P<v>\([A-Z]\)|[A-Z]\b|{_NUM})\s+is\s+the\s+"
    r"(?:(?:correct|right|final|best)\s+(?:answer|option|choice)|answer)\b(?!\s+(?:choices?|options?|key|sheet|box|column|field|area|space)\b)",
)
_CONCLUSION = re.compile(
    r"(?:so|thus|therefore|hence|consequently|in\s+conclusion)\b(?![-'’])[\s,:]*(?P<subject>[^\n]{0,150}?)\s*"
    r"(?:\b(?:is|are|equals|would\s+be|will\s+be|must\s+be|should\s+be|gives|yields|comes\s+to)\b|=)"
    r"\s*:?\s*(?P<v>[^\n]+)$",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_INSTRUCTION = re.compile(  # "Choose the correct answer: A, B, C or D" restates the question
    r"\b(?:choose|select|pick|find|give|write|determine|provide|enter|circle|mark|fill|what|which|asks?|asked|asking)"
    r"\b[^.?!\n]{0,40}$",
    re.IGNORECASE,
)


def _clean(value: str) -> str:
    """A stated value without markdown, quotes, math delimiters, wrappers or a closing full stop."""
    value = _WRAPPER.sub(r"\1", value.replace("**", "").replace("`", ""))
    value = value.replace("\\(", "").replace("\\)", "")
    for _ in range(2):  # "$\frac{3}{4}$." -> "\frac{3}{4}"
        value = value.strip().rstrip(".。!").strip("\"'“”‘’$ \t")
    return _OPTION_WORD.sub("", value).strip()


def _norm(text: str) -> str:
    return " ".join(text.casefold().split()).strip(" .")


def _value(raw: str, options: Sequence[str] | None, mode: str) -> str | None:
    """The answer value ``raw`` states, or None when it is a sentence, a pointer or a blank.

    ``mode``: "marker" (after "the answer is": also short phrases), "conclusion" (after "Therefore,
    ... is": numbers, letters, formulas, option texts, yes/no) or "whole" (the whole caption: numbers
    with at most a short unit, letters, option texts, yes/no).
    """
    value = _clean(raw)
    if not value or len(value) > 120:
        return None
    if mode == "whole":
        if letter := _BARE_LETTER.fullmatch(value):
            return letter["l"]
    elif letter := _LETTER.fullmatch(value):
        return letter["a"] or letter["b"]
    if number := _NUMBER.match(value):
        unit = _UNIT_STRICT if mode == "whole" else _UNIT_LENIENT
        if unit.fullmatch(value, number.end()):
            return value
    if options and any(_norm(value) == _norm(opt) for opt in options if opt):
        return value
    if _norm(value) in _YES_NO:
        return value
    if mode == "whole":
        return None
    bare = re.sub(r"\\[A-Za-z]+", " ", value)
    if not re.search(r"[A-Za-z]{2,}", bare) and re.search(r"[\d\\]", value):
        return value  # a formula: "\frac{1}{2}", "2\sqrt{3}", "x = 5"
    if mode == "conclusion":
        return None
    words = value.split()
    if 1 <= len(words) <= 4 and all(re.fullmatch(r"[A-Za-z][A-Za-z'’-]*|\d+", w) for w in words):
        if not _NEGATION.search(value) and not any(w.casefold() in _NOT_A_VALUE for w in words):
            return value
    return None


def _stated(content: str, options: Sequence[str] | None, mode: str) -> str | None:
    """The value at the start of ``content``: the whole of it, else its first clause."""
    content = content.strip()
    if (whole := _value(content, options, mode)) is not None:
        return whole
    end = _END.search(content)
    return _value(content[: end.start()], options, mode) if end else None


def find_leak(caption: str, options: Sequence[str] | None = None) -> str | None:
    """The final answer ``caption`` states ("12", "B", "bar C"), or None when it only describes.

    Caught: a non-empty ``\\boxed{}`` / ``\\fbox{}`` (nested braces) or ``<answer>`` tag; "the
    (final/correct) answer is X", "Answer: X", "the correct option is B", "option C is correct",
    "(B) is the correct answer"; a sentence opening with so/thus/therefore/hence/consequently/in
    conclusion that ends "is/equals/= X" (X a number, letter, formula, option text or yes/no); with
    ``options``, a last line that is only an option letter; a caption that is only a value (a
    number, a letter, an option's text, yes/no). X must be an answer value, not a sentence, a blank
    or a negation ("the answer is not shown"). Not caught, by design: descriptions that read values
    off the image ("bar C has value 7"), restate the question or list options. A caption that
    transcribes an "Answer: 42" printed in the image is caught (the reasoner would copy it as well).
    """
    text = (caption or "").replace("**", "")
    if not text.strip():
        return None
    boxed = last_boxed(text)
    if boxed is not None and boxed.strip():
        value = _clean(boxed) or boxed.strip()
        return _value(value, options, "marker") or value
    for tag in reversed(list(_TAG.finditer(text))):
        if (value := _clean(tag["v"])) and "\n" not in value:
            return _stated(value, options, "marker") or value

    found: list[tuple[int, str]] = []
    for match in _MARKER.finditer(text):
        if _INSTRUCTION.search(text, max(0, match.start() - 60), match.start()):
            continue
        content = match["v"] if match["v"].strip() else _next_line(text, match.end())
        if (value := _stated(content, options, "marker")) is not None:
            found.append((match.start(), value))
    for pattern in (_OPTION_CORRECT, _IS_THE_ANSWER):
        for match in pattern.finditer(text):
            found.append((match.start(), _clean(match["v"]).strip("()").upper()))
    position = 0
    for sentence in _SENTENCE.split(text):
        start = text.find(sentence, position)
        position = max(position, start)
        stripped = sentence.strip().lstrip("*#-> \t")
        match = _CONCLUSION.match(stripped)
        if match and not _NEGATION.search(match["subject"]):
            if (value := _stated(match["v"], options, "conclusion")) is not None:
                found.append((start, value))
    if found:
        return max(found, key=lambda hit: hit[0])[1]

    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lone = [_LONE_LETTER.fullmatch(line) for line in lines]
    if options and len(lines) > 1 and lone[-1] and sum(map(bool, lone)) == 1:  # not a column of labels
        if ord(lone[-1]["l"]) - ord("A") < len(options):
            return lone[-1]["l"]
    return _value(text, options, "whole") if len(lines) == 1 else None


def _next_line(text: str, pos: int) -> str:
    """The first non-empty line after ``pos`` ("Final answer:\\n12")."""
    return next((line for line in text[pos : pos + 2000].splitlines() if line.strip()), "")


# --------------------------------------------------------------------------- TRL reward functions

MetricLogger = Callable[[str, float], None]
ColumnLogger = Callable[[str, list], None]


class LeakPenalty:
    """TRL reward function: ``-penalty`` for a caption that states a final answer (`find_leak`), else 0.0.

    Takes TRL's ``options`` column when the dataset has one; logs ``vpo/leak_rate`` through TRL's
    ``log_metric`` and the leaked answers ("" for none) as the completions-table column ``leak``.
    """

    __name__ = "leak_penalty"

    def __init__(self, penalty: float = 1.0) -> None:
        if penalty < 0:
            raise ValueError("penalty must be >= 0 (it is subtracted)")
        self.penalty = penalty

    def __call__(
        self,
        prompts: list,
        completions: list,
        completion_ids: list[list[int]] | None = None,
        *,
        options: Sequence[Sequence[str] | None] | None = None,
        log_metric: MetricLogger | None = None,
        log_extra: ColumnLogger | None = None,
        **_: Any,
    ) -> list[float]:
        opts = row_options(options, len(completions))
        leaks = [find_leak(completion_text(c), o) for c, o in zip(completions, opts, strict=True)]
        if log_metric is not None:
            log_metric(
                "vpo/leak_rate", sum(leak is not None for leak in leaks) / len(leaks) if leaks else 0.0
            )
        if log_extra is not None:
            log_extra("leak", [leak or "" for leak in leaks])
        return [-self.penalty if leak is not None else 0.0 for leak in leaks]


DESCRIBE_CHECK_SYSTEM = (
    "You check captions written for a text-only reasoner that cannot see the image. A caption must only "
    "describe the image: the objects, text, labels, numbers and layout visible in it. Check whether the "
    "caption contains an answer to the question, a solution, problem-solving, explanations or "
    "interpretations (for example reasoning steps, calculations, conclusions, or causal statements such as "
    "'because' or 'therefore'). If it contains any of these, it does not only describe the image.\n"
    "Reply with one word: yes if the caption only describes the image, no otherwise."
)
"""The judge's system message (criteria after Visionary-R1's caption check; see the module docstring)."""

DESCRIBE_CHECK_USER = (
    "Question about the image:\n{question}\n\nCaption:\n{caption}\n\n"
    "Does the caption only describe the image, without answering or solving the question? Reply yes or no."
)
"""The judge's user message; ``{question}`` is the question with its options."""


def parse_yes_no(reply: str) -> bool | None:
    """The judge's verdict: True for yes, False for no, None when the reply is neither or both.

    Reasoning blocks are dropped; a ``\\boxed{}`` verdict wins; otherwise the first word when it is
    yes/no (not "yes or no"), else the only one of yes/no the reply contains.
    """
    text = strip_think(reply or "")
    boxed = last_boxed(text)
    words = re.findall(r"[a-z]+", (boxed if boxed and boxed.strip() else text).lower())
    if words and words[0] in ("yes", "no") and words[1:2] != ["or"]:  # not "yes or no? ..."
        return words[0] == "yes"
    said = {word for word in words if word in ("yes", "no")}
    return said.pop() == "yes" if len(said) == 1 else None


class DescribeCheck:
    """Async TRL reward function: ``-penalty`` when a judge model says the caption does not only
    describe the image, else 0.0.

    ``judge`` is a chat model or a spec string (resolved with ``resolver``, default a fresh
    `ModelResolver`, in the text role "reasoner"). All captions of a batch go through one
    ``judge.abatch`` bounded by ``concurrency``. Nothing the judge does stops training: a failed
    call or an unparseable reply scores 0.0 and is counted (``vpo/describe_check_errors``,
    ``vpo/describe_check_unparsed``); ``vpo/not_describing_rate`` is the share of captions judged
    "no". The verdicts ("yes", "no", "unparsed", "error") go to the completions-table column
    ``describes``.
    """

    __name__ = "describe_check"

    def __init__(
        self,
        judge: BaseChatModel | str,
        *,
        penalty: float = 1.0,
        concurrency: int = 16,
        resolver: ModelResolver | None = None,
        system: str = DESCRIBE_CHECK_SYSTEM,
        user: str = DESCRIBE_CHECK_USER,
    ) -> None:
        if penalty < 0 or concurrency < 1:
            raise ValueError("penalty must be >= 0 and concurrency >= 1")
        if isinstance(judge, str):
            from rapid_agent.models.spec import ModelResolver  # loads model backends: only when needed

            judge = (resolver or ModelResolver()).resolve(judge, "reasoner")
        self.judge = judge
        self.penalty = penalty
        self.concurrency = concurrency
        self.system = system
        self.user = user

    def messages(self, question: str, options: Sequence[str] | None, caption: str) -> list[BaseMessage]:
        """The judge's messages for one caption."""
        try:
            shown = format_question(question, options)
        except Exception:  # too many options for letters: show the question alone
            shown = question
        return [SystemMessage(self.system), HumanMessage(self.user.format(question=shown, caption=caption))]

    async def __call__(
        self,
        prompts: list,
        completions: list,
        completion_ids: list[list[int]] | None = None,
        *,
        question: Sequence[str],
        options: Sequence[Sequence[str] | None] | None = None,
        log_metric: MetricLogger | None = None,
        log_extra: ColumnLogger | None = None,
        **_: Any,
    ) -> list[float]:
        n = len(completions)
        opts = row_options(options, n)
        batch = [self.messages(question[i], opts[i], completion_text(completions[i])) for i in range(n)]
        try:
            replies: list[Any] = await self.judge.abatch(
                batch, config={"max_concurrency": self.concurrency}, return_exceptions=True
            )
        except Exception as exc:  # the batch call itself failed: every caption is an error
            replies = [exc] * n

        rewards: list[float] = []
        verdicts: list[str] = []
        errors: list[BaseException] = []
        for reply in replies:
            if isinstance(reply, BaseException):
                errors.append(reply)
                verdict = None
                verdicts.append("error")
            else:
                verdict = parse_yes_no(str(getattr(reply, "text", reply)))
                verdicts.append({True: "yes", False: "no", None: "unparsed"}[verdict])
            rewards.append(-self.penalty if verdict is False else 0.0)

        if errors:
            log.warning(
                "describe check: %d of %d judge calls failed (first: %s: %s); scored 0.0",
                len(errors),
                n,
                type(errors[0]).__name__,
                errors[0],
            )
        if log_metric is not None:
            log_metric("vpo/not_describing_rate", verdicts.count("no") / n if n else 0.0)
            log_metric("vpo/describe_check_unparsed", float(verdicts.count("unparsed")))
            log_metric("vpo/describe_check_errors", float(len(errors)))
        if log_extra is not None:
            log_extra("describes", verdicts)
        return rewards
