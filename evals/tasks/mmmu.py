"""MMMU (MMMU/MMMU, 30 per-subject configs, split `validation` or `dev`).

Quirks: `options` is a string repr of a list; `<image N>` tags in question and options name the
columns `image_N` (the images sent are the tagged ones, in tag-number order); open questions may
store several accepted answers as a list repr. Accuracy per subject (from the id) and per domain.
"""

from __future__ import annotations

import re

from evals import judge_prompts
from evals.judge_prompts import OfficialJudge
from evals.metrics import by_group, combine
from evals.sample import Sample
from evals.tasks.base import Benchmark, Row, Split, literal_list

DOMAINS = {
    "Art and Design": ("Art", "Art_Theory", "Design", "Music"),
    "Business": ("Accounting", "Economics", "Finance", "Manage", "Marketing"),
    "Science": ("Biology", "Chemistry", "Geography", "Math", "Physics"),
    "Health and Medicine": (
        "Basic_Medical_Science", "Clinical_Medicine", "Diagnostics_and_Laboratory_Medicine", "Pharmacy", "Public_Health",
    ),
    "Humanities and Social Science": ("History", "Literature", "Sociology", "Psychology"),
    "Tech and Engineering": (
        "Agriculture", "Architecture_and_Engineering", "Computer_Science", "Electronics", "Energy_and_Power",
        "Materials", "Mechanical_Engineering",
    ),
}
SUBJECTS = tuple(sorted(s for subjects in DOMAINS.values() for s in subjects))
DOMAIN_OF = {s: d for d, subjects in DOMAINS.items() for s in subjects}
QUESTION_TYPES = {"multiple-choice": "multiple_choice", "open": "auto"}
_TAG = re.compile(r"<image (\d+)>")
_ID = re.compile(r"^[a-z]+_(.+?)_\d+$")


def to_sample(row: Row) -> Sample:
    sample_id = row.text("id")
    match = _ID.match(sample_id)
    if match is None or match.group(1) not in DOMAIN_OF:
        raise row.error(f"id {sample_id!r} does not name one of the 30 MMMU subjects (split_Subject_N)")
    subject = match.group(1)
    answer_type = row.choice("question_type", QUESTION_TYPES)
    options = None
    if answer_type == "multiple_choice":
        options = literal_list(row.get("options"))
        if not options:
            raise row.error(f"options {str(row.get('options'))[:80]!r} is not a list repr such as \"['1', '2']\"")
    question = row.text("question")
    tagged = sorted({int(n) for text in [question, *(options or [])] for n in _TAG.findall(text)})
    images = tuple(row.image(f"image_{n}") for n in tagged) or (row.image("image_1"),)
    answers = literal_list(row.get("answer")) or [row.text("answer")]
    return Sample(
        id=sample_id,
        benchmark="mmmu",
        images=images,
        question=question,
        options=tuple(_TAG.sub(r"(image \1)", o) for o in options) if options else None,
        answer=answers[0],
        alt_answers=tuple(answers[1:]),
        answer_type=answer_type,
        metadata={"subject": subject, "domain": DOMAIN_OF[subject]},
    )


BENCHMARK = Benchmark(
    name="mmmu",
    hub_id="MMMU/MMMU",
    configs=SUBJECTS,
    splits={"validation": Split(parts=("validation",)), "dev": Split(parts=("dev",))},
    default_split="validation",
    to_sample=to_sample,
    metrics=combine(by_group("domain"), by_group("subject")),
    judge_prompt=OfficialJudge(
        pipeline="open-compass/VLMEvalKit:vlmeval/dataset/image_mcq.py (MMMU_DEV_VAL)", prompt=judge_prompts.MCQ,
        note="multiple-choice questions; open ones get the generic prompt (VLMEvalKit turns them into options "
        "holding the gold answer, which an extractor must not see; the MMMU authors' scorer is rule-based)",
    ),
)
