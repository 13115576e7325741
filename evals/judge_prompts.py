"""The LLM judge's prompts as data: the generic one, and the official pipelines' own, per benchmark.

A `JudgePrompt` turns (sample, response) into the messages of an extraction call and reads the
answer out of the judge's reply; MathVerse's adds a second, scoring call (extract, then score).
Texts from an official pipeline are copied verbatim (typos included) with the repository and path
they come from; so is how that pipeline assembles them. Each benchmark names its official prompt in
its loader (`Benchmark.judge_prompt`); `evals.judge` picks per sample (`--judge-prompt`).

Which pipeline: the benchmark authors' own where it has an LLM step (MathVista, MathVerse), else
VLMEvalKit's (MATH-Vision, DynaMath, LogicVista, We-Math, MMStar, MMMU's multiple-choice questions),
whose LLM step comes after rule-based pre-checks. Those pre-checks (MathVista's "the response is a
number", VLMEvalKit's `can_infer`, DynaMath's JSON parse) are not reproduced: the judge reads every
response, and the rules (`rapid_agent.answers`) stand where the pre-checks stood.

Licenses: lupantech/MathVista, CC BY-SA 4.0 (the copied prompt text stays under it); ZrrSkywalker/
MathVerse, MIT; open-compass/VLMEvalKit, Apache-2.0.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from evals.sample import Sample
from rapid_agent.answers import extract_answer
from rapid_agent.prompts import format_question

MAX_RESPONSE_CHARS = 6000  # the tail of long responses, where the conclusion is
NO_ANSWER = ("none", "no answer", "n/a", "null", "z")
VLMEVALKIT = "open-compass/VLMEvalKit"


@dataclass(frozen=True)
class JudgePrompt:
    """One way of asking a judge for a response's answer.

    `extract(sample, response)` gives the extraction call's messages and `read(sample, reply)` the
    answer in its reply (None: the reply names none). `score(sample, extraction_reply)`, where set,
    gives a second call that states whether the extraction matches the gold answer, and
    `read_score(reply)` its verdict (None: unreadable). `texts` are every template text it uses: their
    hash is `version`, part of each cached call's key. `needs_options`: usable only for samples whose
    options are known (else the generic prompt stands in).
    """

    name: str
    source: str
    texts: tuple[str, ...]
    extract: Callable[[Sample, str], list[BaseMessage]]
    read: Callable[[Sample, str], str | None]
    score: Callable[[Sample, str], list[BaseMessage]] | None = None
    read_score: Callable[[str], bool | None] | None = None
    needs_options: bool = False

    @property
    def version(self) -> str:
        return hashlib.sha256("\0".join((self.name, *self.texts)).encode()).hexdigest()[:12]

    @property
    def label(self) -> str:
        """`name@version`, as judge verdicts record it."""
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class OfficialJudge:
    """A benchmark's official pipeline: its LLM prompt, or None where the pipeline has no LLM step
    (`--judge-prompt official` then uses the generic prompt, and says why with `note`)."""

    pipeline: str
    prompt: JudgePrompt | None = None
    note: str = ""


def _tail(response: str) -> str:
    return response[-MAX_RESPONSE_CHARS:]


def _answer(text: str) -> str | None:
    """A reply's answer, or None for the words that mean none."""
    text = text.strip()
    return None if not text or text.lower().strip(".") in NO_ANSWER else text


def _user(text: str) -> list[BaseMessage]:
    """The official pipelines send the whole prompt as one user message."""
    return [HumanMessage(text)]


# --------------------------------------------------------------------------- generic (this project's)

JUDGE_SYSTEM = (
    "You read a model's response to a question and report the final answer the response gives. "
    "Do not solve the question yourself and do not correct the response."
)
JUDGE_USER = (
    "Question:\n{question}\n\nModel response:\n{response}\n\n"
    "What final answer does the response give? For a multiple-choice question give the option letter. "
    "Reply with a single line 'Answer: <answer>', or 'Answer: none' if the response gives no final answer."
)


def _generic_messages(sample: Sample, response: str) -> list[BaseMessage]:
    question = format_question(sample.question, sample.prompt_options)
    return [SystemMessage(JUDGE_SYSTEM), HumanMessage(JUDGE_USER.format(question=question, response=_tail(response)))]


def _generic_read(sample: Sample, reply: str) -> str | None:
    answer = extract_answer(reply, list(sample.options) if sample.options else None)
    return None if answer is None else _answer(answer)


GENERIC = JudgePrompt(
    name="generic", source="rapid-agent (evals/judge_prompts.py)", texts=(JUDGE_SYSTEM, JUDGE_USER),
    extract=_generic_messages, read=_generic_read,
)

# --------------------------------------------------------------------------- MathVista
# lupantech/MathVista, evaluation/prompts/ext_ans.py (`demo_prompt`), verbatim; CC BY-SA 4.0.

MATHVISTA_DEMO_PROMPT = """
Please read the following example. Then extract the answer from the model response and type it at the end of the prompt.

Hint: Please answer the question requiring an integer answer and provide the final value, e.g., 1, 2, 3, at the end.
Question: Which number is missing?

Model response: The number missing in the sequence is 14.

Extracted answer: 14

Hint: Please answer the question requiring a floating-point number with one decimal place and provide the final value, e.g., 1.2, 1.3, 1.4, at the end.
Question: What is the fraction of females facing the camera?

Model response: The fraction of females facing the camera is 0.6, which means that six out of ten females in the group are facing the camera.

Extracted answer: 0.6

Hint: Please answer the question requiring a floating-point number with two decimal places and provide the final value, e.g., 1.23, 1.34, 1.45, at the end.
Question: How much money does Luca need to buy a sour apple candy and a butterscotch candy? (Unit: $)

Model response: Luca needs $1.45 to buy a sour apple candy and a butterscotch candy.

Extracted answer: 1.45

Hint: Please answer the question requiring a Python list as an answer and provide the final list, e.g., [1, 2, 3], [1.2, 1.3, 1.4], at the end.
Question: Between which two years does the line  graph saw its maximum peak?

Model response: The line graph saw its maximum peak between 2007 and 2008.

Extracted answer: [2007, 2008]

Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.
Question: What fraction of the shape is blue?\nChoices:\n(A) 3/11\n(B) 8/11\n(C) 6/11\n(D) 3/5

Model response: The correct answer is (B) 8/11.

Extracted answer: B
"""

# The hints of the dataset's `query` column, as lupantech/MathVista evaluation/build_query.py
# (`create_one_query`, shot_type "solution") writes them; verbatim.
MATHVISTA_HINTS = {
    "multiple_choice": "Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.",
    "integer": "Hint: Please answer the question requiring an integer answer and provide the final value, e.g., 1, 2, 3, at the end.",
    "float1": "Hint: Please answer the question requiring a floating-point number with one decimal place and provide the final value, e.g., 1.2, 1.3, 1.4, at the end.",
    "float2": "Hint: Please answer the question requiring a floating-point number with two decimal places and provide the final value, e.g., 1.23, 1.34, 1.45, at the end.",
    "list": "Hint: Please answer the question requiring a Python list as an answer and provide the final list, e.g., [1, 2, 3], [1.2, 1.3, 1.4], at the end.",
}


def mathvista_query(sample: Sample) -> str:
    """The MathVista `query` of a sample: hint, question (with its unit) and choices, as build_query.py
    writes them (no hint for a float precision other than 1 or 2, which build_query.py does not cover)."""
    key = f"float{sample.precision}" if sample.answer_type == "float" else sample.answer_type
    question = f"Question: {sample.question}" + (f" (Unit: {sample.unit})" if sample.unit else "")
    choices = "\n".join(["Choices:", *(f"({chr(ord('A') + i)}) {c}" for i, c in enumerate(sample.options))]) \
        if sample.options else ""
    return "\n".join(e for e in (MATHVISTA_HINTS.get(key, ""), question, choices) if e)


def _mathvista_messages(sample: Sample, response: str) -> list[BaseMessage]:
    # evaluation/extract_answer.py, create_test_prompt
    demo_prompt = MATHVISTA_DEMO_PROMPT.strip()
    test_prompt = f"{mathvista_query(sample)}\n\n{_tail(response)}"
    return _user(f"{demo_prompt}\n\n{test_prompt}\n\nExtracted answer: ")


def _extracted(reply: str, prefix: str) -> str:
    """The reply without the answer prefix a judge sometimes repeats."""
    return re.sub(rf"^\s*{re.escape(prefix)}", "", reply, flags=re.IGNORECASE).strip()


MATHVISTA = JudgePrompt(
    name="mathvista", source="lupantech/MathVista:evaluation/prompts/ext_ans.py",
    texts=(MATHVISTA_DEMO_PROMPT, *MATHVISTA_HINTS.values()),
    extract=_mathvista_messages, read=lambda sample, reply: _answer(_extracted(reply, "Extracted answer:")),
)

# --------------------------------------------------------------------------- MathVerse
# ZrrSkywalker/MathVerse, evaluation/prompts.py (`demo_prompt_extract`, `demo_prompt_score`), verbatim; MIT.
# Assembled as evaluation/extract_answer_s1.py and evaluation/score_answer_s2.py do.

MATHVERSE_EXTRACT_PROMPT = """
I am providing you a response from a model to a math problem, termed 'Model Response'. You should extract the answer from the response as 'Extracted Answer'. Directly output the extracted answer with no explanation.

1.
Model response: 'Rounded to two decimal places, the perimeter of the sector is approximately:\n\n(-2, 1)'
Extracted Answer: (-2, 1)

2.
Model response: 'at those points.\n\nTherefore, the correct option that represents the meaning of the intersection points of the graphs is:\n\nD. They give the solutions to the equation $f(t)=g(t)$.",'
Extracted Answer: D

3.
Model response: ' at 1 (there's a closed circle at y = 1), the range in interval notation is \\((-4, 1]\\).\n\nFinal values:\nDomain: \\((-3, 3]\\)\nRange: \\((-4, 1]\\)'
Extracted Answer: Domain: \\((-3, 3]\\)\nRange: \\((-4, 1]\\)

4.
Model response: 'As it stands, I cannot provide the correct option letter because there isn't enough information to solve for 'y'.'
Extracted Answer: null

5.
Model response: 'Given that AB = 17.6 meters, we can now substitute into the equation:\n\nd = 17.6 / cos(38\u00b0)\n\nTherefore, to one decimal place, the distance d between Ned and Bart is approximately 22.3 meters.'
Extracted answer: 22.3

6.
Model response:  have all the coefficients for the quadratic function:\n\\( f(x) = ax^2 + bx + c \\)\n\\( f(x) = -1x^2 - 2x + 1 \\)\n\nTherefore, the equation for the graphed function \\( f \\) is:\n\\( f(x) = -x^2 - 2x + 1 \\)"'
Extracted answer: f(x) = -x^2 - 2x + 1

7.
"""

MATHVERSE_SCORE_PROMPT = """
Below are two answers to a math question. Question is [Question], [Standard Answer] is the standard answer to the question, and [Model_answer] is the answer extracted from a model's output to this question.  Determine whether these two answers are consistent.
Please note that only when the [Model_answer] completely matches the [Standard Answer] means they are consistent. For non-multiple-choice questions, if the meaning is expressed in the same way, it is also considered consistent, for example, 0.5m and 50cm.
If they are consistent, Judement is 1; if they are different, Judement is 0.

[Question]: Write the set of numbers represented on the number line in interval notation.
[Standard Answer]: (-2,1]
[Model_answer] : Extracted Answer: \\((-2, 1)\\)
Judgement: 0

[Question]: As shown in the figure, circle O has a radius 1.0, if angle BAC = 60.0, then the length of BC is ()\nChoices:\nA:2\nB:2\u221a{{3}}\nC:\u221a{{3}}\nD:2\u221a{{2}}
[Standard Answer]: C
[Model_answer] : B:2\u221a{{3}}
Judgement: 0

[Question]: Find the domain and range of the function f using interval notation.
[Standard Answer]: domain: [-4, 0) and range: (-3, 1]
[Model_answer] : Range: \\((-4, 1]\\)
Judgement: 0

[Question]: As shown in the figure, circle O has a radius 1.0, if angle BAC = 60.0, then the length of BC is ()\nChoices:\nA:2\nB:2\u221a{{3}}\nC:\u221a{{3}}\nD:2\u221a{{2}}
[Standard Answer]: C
[Model_answer] : null
Judgement: 0

[Question]: Given the graph of the ellipse that intersects with x-axis at 9 and -9 and with y-axis at 3 and -3, determine its equation.A. \\frac{{x^2}}{{81}} + \\frac{{y^2}}{{9}} = 1 B. Can not determine.\n
[Standard Answer]: A
[Model_answer] : \\frac{{x^2}}{{81}} + \\frac{{y^2}}{{9}} = 1
Judgement: 1

[Question]: {question}
[Standard Answer]: {gt}
[Model_answer] : {extraction}
Judgement: """


def _mathverse_extraction(reply: str) -> str:
    # extract_answer_s1.py: extraction.replace('Extracted Answer: ', '').strip()  # sometimes gpt will repeat
    return reply.replace("Extracted Answer: ", "").strip()


def _mathverse_extract(sample: Sample, response: str) -> list[BaseMessage]:
    # extract_answer_s1.py, create_test_prompt
    demo_prompt = MATHVERSE_EXTRACT_PROMPT.strip()
    test_prompt = f"Model response: '{_tail(response)}'\nExtracted Answer: "
    return _user(f"{demo_prompt}\n\n{test_prompt}")


def _mathverse_score(sample: Sample, extraction_reply: str) -> list[BaseMessage]:
    # score_answer_s2.py, create_test_prompt: the question as the dataset's `question` field holds it
    # (Vision Only rows have none there; their loader's stand-in, `query_wo`, goes in its place)
    demo_prompt = MATHVERSE_SCORE_PROMPT.strip()
    return _user(demo_prompt.format(question=sample.question, gt=sample.answer,
                                    extraction=_mathverse_extraction(extraction_reply)))


def _mathverse_judgement(reply: str) -> bool | None:
    # score_answer_s2.py, match_answer: extraction.replace("Judgement:", "").strip(), then '0' or '1'
    judgement = reply.replace("Judgement:", "").strip()
    return {"0": False, "1": True}.get(judgement)


MATHVERSE = JudgePrompt(
    name="mathverse", source="ZrrSkywalker/MathVerse:evaluation/prompts.py",
    texts=(MATHVERSE_EXTRACT_PROMPT, MATHVERSE_SCORE_PROMPT),
    extract=_mathverse_extract, read=lambda sample, reply: _answer(_mathverse_extraction(reply)),
    score=_mathverse_score, read_score=_mathverse_judgement,
)

# --------------------------------------------------------------------------- MATH-Vision
# open-compass/VLMEvalKit, vlmeval/dataset/utils/mathv.py (`get_gpt4_ICE`, `build_mathv_gpt4_prompt`),
# verbatim; Apache-2.0. (The MATH-V authors' evaluation/evaluate.py has no LLM step.)

MATHV_TASK_DESCRIPTION = """
Please read the following example.
Then extract the answer from the model response and type it at the end of the prompt.\n
"""
MATHV_EXAMPLES = (
    """
Hint: Please answer the question and provide the final answer at the end.\n
Question: Which number is missing?\n
Model response: The number missing in the sequence is 14.\n
Extracted answer: 14
""",
    """
Hint: Please answer the question and provide the final answer at the end.\n
Question: What is the fraction of females facing the camera?\n
Model response: The fraction of females facing the camera is 0.6,
which means that six out of ten females in the group are facing the camera.\n
Extracted answer: 0.6
""",
    """
Hint: Please answer the question and provide the final answer at the end.\n
Question: How much money does Luca need to buy a sour apple candy and a butter-scotch candy? (Unit: $)\n
Model response: Luca needs $1.45 to buy a sour apple candy and a butterscotch candy.\n
Extracted answer: 1.45
""",
    """
Hint: Please answer the question and provide the final answer at the end.\n
Question: Between which two years does the line graph saw its maximum peak?\n
Model response: The line graph saw its maximum peak between 2007 and 2008.\n
Extracted answer: [2007, 2008]
""",
    """
Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.\n
Question: What fraction of the shape is blue?\n
Choices: (A) 3/11 (B) 8/11 (C) 6/11 (D) 3/5\n
Model response: The correct answer is (B) 8/11.\n
Extracted answer: B
""",
)


def _mathv_messages(sample: Sample, response: str) -> list[BaseMessage]:
    # build_mathv_gpt4_prompt; `question` is the question as the model saw it (with its options)
    prompt = MATHV_TASK_DESCRIPTION
    for example in MATHV_EXAMPLES:
        prompt += example + "\n"
    prompt += format_question(sample.question, sample.prompt_options) + "\n"
    prompt += "Model respone: " + _tail(response)
    prompt += "Extracted answer:"
    return _user(prompt)


MATHVISION = JudgePrompt(
    name="mathvision", source=f"{VLMEVALKIT}:vlmeval/dataset/utils/mathv.py",
    texts=(MATHV_TASK_DESCRIPTION, *MATHV_EXAMPLES),
    extract=_mathv_messages, read=lambda sample, reply: _answer(_extracted(reply, "Extracted answer:")),
)

# --------------------------------------------------------------------------- DynaMath
# open-compass/VLMEvalKit, vlmeval/dataset/dynamath.py (`DynaMath_auxeval`), verbatim; Apache-2.0.
# (The DynaMath authors' evaluation/*_json_eval.py read the JSON answer by rules: no LLM step.)

DYNAMATH_INSTRUCTIONS = {
    "multiple_choice": "Output the corresponing choice option, such as 'A', 'B', 'C', 'D', in a single line.",
    "float": "Output a three-digit floating-point number in a single line.",
    "free-form": (
        "Output a short answer in a single line. Any float numbers in the answer "
        "should be formatted as three-digit floating-point numbers."
    ),
}
DYNAMATH_PROMPT = "Free-form answer: {pred}\nInstruction: {inst}"


def _dynamath_preprocess(response: str) -> str:
    """dynamath.py `preprocess`: the outermost {...} when there is one, without backslashes."""
    if 0 <= response.find("{") < response.rfind("}"):
        response = response[response.find("{"): response.rfind("}") + 1]
    return response.replace("\\", "")


def _dynamath_messages(sample: Sample, response: str) -> list[BaseMessage]:
    inst = DYNAMATH_INSTRUCTIONS.get(sample.answer_type, DYNAMATH_INSTRUCTIONS["free-form"])
    return _user(DYNAMATH_PROMPT.format(pred=_dynamath_preprocess(_tail(response)), inst=inst))


def _dynamath_read(sample: Sample, reply: str) -> str | None:
    """dynamath.py `parse_answer`: a multiple-choice reply names one letter of A-E; a float reply leads
    with its number (`2π` counts as 2·π); free-form replies are taken whole."""
    reply = reply.strip()
    if sample.answer_type == "multiple_choice":
        if len(reply) == 1:
            return _answer(reply.upper())
        letters = [ch for ch in "ABCDE" if ch in reply.upper()]
        return letters[0] if len(letters) == 1 else None
    if sample.answer_type == "float":
        head = reply.split(" ")[0]
        try:
            return str(float(head.split("\u03c0")[0]) * 3.141592653589793) if "\u03c0" in head else str(float(head))
        except ValueError:
            return None
    return _answer(reply)


DYNAMATH = JudgePrompt(
    name="dynamath", source=f"{VLMEVALKIT}:vlmeval/dataset/dynamath.py",
    texts=(DYNAMATH_PROMPT, *DYNAMATH_INSTRUCTIONS.values()),
    extract=_dynamath_messages, read=_dynamath_read,
)

# --------------------------------------------------------------------------- LogicVista
# open-compass/VLMEvalKit, vlmeval/dataset/utils/logicvista.py (`build_prompt_logicvista`), verbatim;
# Apache-2.0. It adapts the LogicVista authors' GPT-4 extractor (Yijia-Xiao/LogicVista,
# eval/extract_accuracy.py), which asks for LangChain-formatted JSON, and adds in-context examples.

LOGICVISTA_PROMPT = (
    "You are a information extractor that extracts multiple choice letter answer choices "
    "from a paragraph that contains the answer choice and sometimes explaination of why that "
    "choice is correct to the given question.\n"
    "What letter did the following answer choose? If the answer did not select a letter answer choice, "
    "first try to infer the answer based off the given choices.\n"
    "If it does not seem like the given answer corresponds to an answer choice OR if there is no selected answer, please just respond with Z.\n"  # noqa: E501
    "Make sure you answer with ONLY the letters chosen.\n"
    'Example 1: \n'
    'Question: <start>\nWhat is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat D. dog\n<end>\n'
    'Answer: <start>\na cute teddy bear\n<end>\nYour output: A\n'
    'Example 2: \n'
    'Question: <start>\nWhat is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat D. dog\n<end>\n'
    'Answer: <start>\nSpider\n<end>\nYour output: Z\n'
    'Example 3: \n'
    'Question: <start>\nWhich figure is a rotation of the object?\n<end>\n'
    'Answer: <start>\nThe figure on the right, labeled "D," is a rotation of the object shown in the top left corner.\n<end>\nYour output: D\n'  # noqa: E501
    'Example 4: \n'
    'Question: <start>\nWhich of the boxes comes next in the sequence? Select from A-E\n<end>\n'
    'Answer: <start>\nThe sequence of the boxes is A, B, C, D, E.\n<end>\nYour output: ABCDE\n'
    'Example 5: \n'
    'Question: <start>\n{}\n<end>\nAnswer: <start>\n{}\n<end>\nYour output: '
)


def _logicvista_read(sample: Sample, reply: str) -> str | None:
    """`LogicVista_auxeval`: the reply is upper-case letters (Z: none); several letters are a set."""
    reply = reply.strip()
    if not (reply.isalpha() and reply.isupper()) or reply == "Z":
        return None
    return ", ".join(sorted(set(reply)))


LOGICVISTA = JudgePrompt(
    name="logicvista", source=f"{VLMEVALKIT}:vlmeval/dataset/utils/logicvista.py", texts=(LOGICVISTA_PROMPT,),
    extract=lambda sample, response: _user(LOGICVISTA_PROMPT.format(sample.question, _tail(response))),
    read=_logicvista_read,
)

# --------------------------------------------------------------------------- VLMEvalKit's option matcher
# open-compass/VLMEvalKit, vlmeval/dataset/utils/multiple_choice.py (`build_prompt`,
# `build_prompt_wemath`, used by `extract_answer_from_item`) and vlmeval/smp/vlm.py (`build_option_str`),
# verbatim; Apache-2.0. VLMEvalKit's MMStar, MMMU (an ImageMCQDataset) and We-Math evaluations.

MCQ_PROMPT = (
    'You are an AI assistant who will help me to match '
    'an answer with several options of a single-choice question. '
    'You are provided with a question, several options, and an answer, '
    'and you need to find which option is most similar to the answer. '
    'If the meaning of all options are significantly different from the answer, output Z. '
    'Your should output a single uppercase character in A, B, C, D (if they are valid options), and Z. \n'
    'Example 1: \n'
    'Question: What is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat D. dog\n'
    'Answer: a cute teddy bear\nYour output: A\n'
    'Example 2: \n'
    'Question: What is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat D. dog\n'
    'Answer: Spider\nYour output: Z\n'
    'Example 3: \n'
    'Question: {}?\nOptions: {}\nAnswer: {}\nYour output: '
)
WEMATH_PROMPT = (
    'You are an AI assistant who will help me to match '
    'an answer with several options of a single-choice question. '
    'You are provided with a question, several options, and an answer, '
    'and you need to find which option is most similar to the answer. '
    'If the meaning of all options are significantly different from the answer, output Z. '
    'Your should output a single uppercase character in A, B, C, D, E, F, G (if they are valid options), and Z. \n'
    'Example 1: \n'
    'Question: <start>\nWhat is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat D. dog\n<end>\n'
    'Answer: <start>\na cute teddy bear\n<end>\nYour output: A\n'
    'Example 2: \n'
    'Question: <start>\nWhat is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat D. dog\n<end>\n'
    'Answer: <start>\nSpider\n<end>\nYour output: Z\n'
    'Example 3: \n'
    'Question: <start>\n{}\nOptions: {}\n<end>\nAnswer: <start>\n{}\n<end>\nYour output: '
)
WEMATH_FORMAT_TEMPLATE = (  # build_prompt_wemath removes this answer-format instruction from the question
    "Regarding the format, please answer following the template below, and be sure to include two <> symbols:\n"
    "<Thought process>: <<your thought process>> <Answer>: <<your option>>"
)
OPTIONS_HEADER = 'There are several options: \n'


def option_str(options: tuple[str, ...]) -> str:
    """vlmeval/smp/vlm.py `build_option_str`: the header, then `A. text` per option, one a line."""
    s = OPTIONS_HEADER
    for i, content in enumerate(options):
        s += f'{chr(ord("A") + i)}. {content}\n'
    return s


def _option_letter(sample: Sample, reply: str) -> str | None:
    """The option letter a matcher reply names (Z, or none: no answer)."""
    letter = extract_answer(reply, list(sample.options) if sample.options else None)
    return None if letter is None else _answer(letter)


def _matcher(name: str, template: str, removed: str = "") -> JudgePrompt:
    """VLMEvalKit's option matcher with `template`; `removed` is cut out of the question first."""

    def messages(sample: Sample, response: str) -> list[BaseMessage]:
        question = sample.question.replace(removed, "") if removed else sample.question
        return _user(template.format(question, option_str(sample.options or ()), _tail(response)))

    return JudgePrompt(
        name=name, source=f"{VLMEVALKIT}:vlmeval/dataset/utils/multiple_choice.py",
        texts=(template, OPTIONS_HEADER, removed), extract=messages, read=_option_letter, needs_options=True,
    )


MCQ = _matcher("vlmevalkit-mcq", MCQ_PROMPT)
WEMATH = _matcher("wemath", WEMATH_PROMPT, WEMATH_FORMAT_TEMPLATE)
