"""We-Math (We-Math/We-Math, split `testmini`): 1,740 rows over 525 composite problems.

Rows sharing an `ID` form one composite problem: its one-step parts (`key` `2steps_1`, ...) and the
composite question (`2steps_multi`). The image is stored under `image_path`; the prompt is
`question + "\\n" + option`, and the options ("A. 6; B. 8; ...") are parsed for grading.
Metrics: We-Math's strict/loose scores and the IK/IG/CM/RM rates.
"""

from __future__ import annotations

import re

from evals import judge_prompts
from evals.judge_prompts import OfficialJudge
from evals.metrics import wemath_metrics
from evals.sample import Sample
from evals.tasks.base import Benchmark, Row, Split
from evals.tasks.options import WEMATH, embedded_options

_KEY = re.compile(r"^([23])steps_(\d|multi)$")


def to_sample(row: Row) -> Sample:
    problem, key = row.text("ID"), row.text("key")
    match = _KEY.match(key)
    if match is None or (match.group(2) != "multi" and not 1 <= int(match.group(2)) <= int(match.group(1))):
        raise row.error(f"unknown key {key!r}; expected 2steps_1..2, 2steps_multi, 3steps_1..3 or 3steps_multi")
    option, answer = row.text("option"), row.text("answer")
    options = embedded_options(option, WEMATH, answer)
    return Sample(
        id=f"{problem}/{key}",
        benchmark="wemath",
        images=(row.image("image_path"),),
        question=row.text("question") + "\n" + option,
        options=options,
        options_in_question=options is not None,
        answer=answer,
        answer_type="multiple_choice",
        metadata={"problem": problem, "key": key, "concept": row.get("knowledge concept")},
    )


BENCHMARK = Benchmark(
    name="wemath",
    hub_id="We-Math/We-Math",
    splits={"testmini": Split(parts=("testmini",))},
    default_split="testmini",
    to_sample=to_sample,
    metrics=wemath_metrics,
    headline=("score_strict", "score_loose"),
    cluster_by="problem",  # the one-step parts and the composite question of one ID
    order=lambda s: (s.metadata["problem"], s.metadata["key"]),
    judge_prompt=OfficialJudge(
        pipeline="open-compass/VLMEvalKit:vlmeval/dataset/image_mcq.py (WeMath)", prompt=judge_prompts.WEMATH,
        note="the We-Math authors' evaluation/accuracy.py has no LLM step",
    ),
)
