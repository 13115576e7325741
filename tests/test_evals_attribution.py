"""Attributing wrong decoupled answers to perception or reasoning: the miniature world's exact check,
the general rule from other runs' answers, and the optional caption judge."""

from __future__ import annotations

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from evals.attribution import (
    JUDGE_FILE,
    CaptionJudge,
    attribute,
    caption_key,
    judge_unknown,
    main,
    markdown_section,
    read_judged,
)
from evals.store import SampleRecord
from evals.tasks.miniworld import caption_holds
from rapid_agent.errors import InputError
from rapid_agent.miniworld import world

TASKS = list(world.tasks("test", 5))  # the loader's first items: value, tallest, shortest, difference, sum
VALUE, TALLEST, _, DIFFERENCE, SUM = TASKS


def rec(run: str, *, mode: str = "decoupled", caption: str | None = "cap-1", correct: bool = False, sid: str = "s1",
        bench: str = "bundled", error: str | None = None, truncated: bool = False, values: tuple[int, ...] | None = None,
        captioner: str | None = "cap") -> SampleRecord:
    return SampleRecord(
        run=run, mode=mode, captioner=None if mode == "blind" else captioner, reasoner=None if mode == "direct" else run,
        benchmark=bench, id=sid, question="q?", gold=["1"], captions=[caption] if caption and mode == "decoupled" else [],
        correct=correct, error=error, truncated=truncated, metadata={"values": list(values)} if values else {},
    )


def small(**kw) -> SampleRecord:
    return rec("small [decoupled]", **kw)


# ------------------------------------------------------------------------------ the general rule (evidence)

@pytest.mark.parametrize(("others", "cause", "basis", "why"), [
    ([rec("large [decoupled]", correct=True)], "reasoning", "evidence", "large [decoupled] answered right from the same caption"),
    ([rec("large [decoupled]"), rec("cap [direct]", mode="direct", correct=True)], "perception", "evidence",
     "every run missed it from this caption; cap [direct] answered right"),
    ([rec("small [decoupled] (sft)", caption="cap-2", captioner="sft", correct=True)], "perception", "evidence",
     "every run missed it from this caption; small [decoupled] (sft) answered right"),
    # the same caption read right elsewhere outweighs another caption's success
    ([rec("large [decoupled]", correct=True), rec("cap [direct]", mode="direct", correct=True)], "reasoning", "evidence",
     "large [decoupled] answered right from the same caption"),
    ([rec("large [decoupled]"), rec("cap [direct]", mode="direct")], "unknown", "none", "no run answered it right"),
    ([], "unknown", "none", "no run answered it right"),  # one reasoner, nothing to compare with
    ([rec("small [blind]", mode="blind", correct=True)], "unknown", "none", "no run answered it right"),  # no caption read
    ([rec("large [decoupled]", correct=True, sid="s2")], "unknown", "none", "no run answered it right"),  # another sample
    ([rec("large [decoupled]", correct=False, error="timeout")], "unknown", "none", "no run answered it right"),
])
def test_the_general_rule_reads_other_runs_answers_on_the_same_sample(others, cause, basis, why):
    split = attribute([small(), *others])
    mine = [a for a in split.samples if a.run == "small [decoupled]"]
    assert [(a.cause, a.basis, a.why) for a in mine] == [(cause, basis, why)]


@pytest.mark.parametrize(("record", "attributed"), [
    (small(), True),
    (small(truncated=True), True),  # cut off by the token limit: no answer, still the decoupled pipeline's miss
    (small(correct=True), False),
    (small(error="backend down"), False),  # an error has no answer to attribute
    (rec("cap [direct]", mode="direct"), False),  # only decoupled answers have a caption and a reasoner
    (rec("small [blind]", mode="blind"), False),
])
def test_only_wrong_or_truncated_decoupled_answers_are_attributed(record, attributed):
    assert len(attribute([record]).samples) == int(attributed)


# ------------------------------------------------------------------------------ the miniature world: exact

def mini(task: world.Task, caption: str, **kw) -> SampleRecord:
    return small(bench="miniworld", sid=task.id, caption=caption, values=task.scene.values, **kw)


def wrong_value(task: world.Task, label: str) -> str:
    """The full description with bar `label` misread by one."""
    return world.describe(task.scene).replace(world.bar_phrase(label) + str(task.scene.value(label)),
                                              world.bar_phrase(label) + str(task.scene.value(label) + 1))


@pytest.mark.parametrize(("task", "caption", "holds"), [
    (VALUE, world.describe(VALUE.scene), True),
    (VALUE, world.describe(VALUE.scene, VALUE.asked[0]), True),  # only the bar asked about is needed
    (VALUE, world.describe(VALUE.scene, "".join(set(VALUE.scene.labels) - {VALUE.asked[0]})), False),
    (VALUE, wrong_value(VALUE, VALUE.asked[0]), False),
    (VALUE, wrong_value(VALUE, next(label for label in VALUE.scene.labels if label != VALUE.asked[0])), True),
    (DIFFERENCE, world.describe(DIFFERENCE.scene, "".join(DIFFERENCE.asked)), True),
    (DIFFERENCE, world.describe(DIFFERENCE.scene, DIFFERENCE.asked[0]), False),
    (TALLEST, world.describe(TALLEST.scene), True),
    (TALLEST, world.describe(TALLEST.scene, TALLEST.scene.labels[:2]), False),  # every bar is needed
    (SUM, world.describe(SUM.scene), True),
    (SUM, wrong_value(SUM, "A"), False),
    (SUM, world.describe(SUM.scene) + "; " + wrong_value(SUM, "A"), False),  # two readings of one bar
    (SUM, "", False),
])
def test_the_miniature_world_knows_which_values_a_question_needs(task, caption, holds):
    assert caption_holds(task.id, {"values": list(task.scene.values)}, [caption]) is holds


@pytest.mark.parametrize(("sample_id", "values"), [
    ("test-0-99999-sum", [1, 2, 3]),  # not an item this world drew
    (SUM.id, [v + 1 for v in SUM.scene.values]),  # another scene under the same id (another world version)
    (SUM.id, None),
])
def test_the_exact_check_abstains_on_items_it_cannot_recover(sample_id, values):
    assert caption_holds(sample_id, {"values": values} if values else {}, [world.describe(SUM.scene)]) is None


@pytest.mark.parametrize(("caption", "others", "cause", "why"), [
    # exact wins over the evidence: a lucky right answer from the same bad caption is still perception
    (wrong_value(SUM, "A"), [mini(SUM, wrong_value(SUM, "A"), correct=True).model_copy(update={"run": "large"})],
     "perception", "the caption misses or misstates a value the question needs"),
    (world.describe(SUM.scene), [], "reasoning", "the caption states every value the question needs, right"),
])
def test_the_exact_check_decides_before_the_evidence(caption, others, cause, why):
    split = attribute([mini(SUM, caption), *others])
    assert [(a.cause, a.basis, a.why) for a in split.samples] == [(cause, "exact", why)]
    general = attribute([mini(SUM, caption), *others], exact=False)  # the general rule alone
    assert [a.basis for a in general.samples] != ["exact"]


# ------------------------------------------------------------------------------ the split per run, the report table

def test_the_split_counts_each_runs_errors_and_the_table_shows_them():
    records = [
        small(sid="a"), rec("large [decoupled]", sid="a", correct=True),  # reasoning
        small(sid="b"), rec("large [decoupled]", sid="b"), rec("cap [direct]", mode="direct", sid="b", correct=True),
        small(sid="c"),  # unknown: large missed it as well
        rec("large [decoupled]", sid="c"), small(sid="d", correct=True), rec("large [decoupled]", sid="d", correct=True),
        rec("cap [direct]", mode="direct", sid="a"),
    ]
    rows = {r.run: r for r in attribute(records).rows}
    assert list(rows) == ["small [decoupled]", "large [decoupled]"]  # decoupled runs only, first seen first
    s, large = rows["small [decoupled]"], rows["large [decoupled]"]
    assert (s.wrong, s.perception, s.reasoning, s.unknown, s.by_basis) == (3, 1, 1, 1, {"evidence": 2})
    assert s.perception_share == 0.5
    assert (large.wrong, large.perception, large.unknown, large.perception_share) == (2, 1, 1, 1.0)
    table = markdown_section(attribute(records))
    assert "| small [decoupled] | bundled | 3 | 1 | 1 | 1 | 50.0 | evidence 2 |" in table


def test_a_run_without_errors_has_a_row_and_no_share():
    row, = attribute([small(correct=True)]).rows
    assert (row.wrong, row.perception_share) == (0, None)
    assert "| small [decoupled] | bundled | 0 | 0 | 0 | 0 | — | — |" in markdown_section(attribute([small(correct=True)]))
    assert markdown_section(attribute([rec("cap [direct]", mode="direct")])) == ""  # no decoupled run: no section


def test_pipes_in_run_labels_are_escaped():
    assert "| a\\|b | bundled |" in markdown_section(attribute([rec("a|b")]))


# ------------------------------------------------------------------------------ the optional caption judge

@pytest.mark.parametrize(("reply", "holds"), [
    ("Verdict: yes", True), ("The caption gives A and B.\nVerdict: **No**", False), ("verdict:YES.", True),
    ("I think so.", None), ("Verdict: maybe", None),
])
def test_the_caption_judge_reads_one_verdict_line(reply, holds):
    verdict = CaptionJudge(FakeListChatModel(responses=[reply]), "fake").judge(small())
    assert verdict.holds is holds and verdict.output == reply and verdict.error is None


def test_a_failed_judge_gives_no_verdict():
    class Broken(FakeListChatModel):
        def invoke(self, *args, **kwargs):
            raise ConnectionError("refused")

    verdict = CaptionJudge(Broken(responses=["x"]), "broken").judge(small())
    assert verdict.holds is None and verdict.error == "ConnectionError: refused"


def test_judge_verdicts_are_kept_in_the_folder_and_decide_the_unknown_errors(tmp_path):
    records = [small(sid="a"), small(sid="b"), small(sid="c", caption="other"), rec("large [decoupled]", sid="a"),
               rec("large [decoupled]", sid="c", caption="other", correct=True)]  # c is decided by the evidence
    model = FakeListChatModel(responses=["Verdict: yes", "Verdict: no", "no idea"])
    verdicts = judge_unknown(records, CaptionJudge(model, "fake"), tmp_path)
    assert [(v.id, v.holds) for v in verdicts] == [("a", True), ("b", False)]  # each sample's captions judged once
    judged = read_judged(tmp_path)
    assert judged == {caption_key(records[0]): True, caption_key(records[1]): False}
    causes = {(a.run, a.id): (a.cause, a.basis) for a in attribute(records, judged=judged).samples}
    assert causes == {("small [decoupled]", "a"): ("reasoning", "judge"), ("small [decoupled]", "b"): ("perception", "judge"),
                      ("large [decoupled]", "a"): ("reasoning", "judge"), ("small [decoupled]", "c"): ("reasoning", "evidence")}
    assert judge_unknown(records, CaptionJudge(model, "fake"), tmp_path) == []  # nothing left to judge
    assert attribute(records).samples[0].cause == "unknown"  # without the verdicts: off by default


def test_a_judge_verdict_is_about_these_captions_only(tmp_path):
    (tmp_path / JUDGE_FILE).write_text("")
    assert caption_key(small()) != caption_key(small(caption="cap-2"))
    (tmp_path / JUDGE_FILE).write_text("not json\n")
    with pytest.raises(InputError, match="not a caption verdict"):
        read_judged(tmp_path)


def test_the_judge_command_refuses_a_folder_without_results(tmp_path, capsys):
    assert main([str(tmp_path), "--judge", "tiny"]) == 2
    assert "holds no samples.jsonl" in capsys.readouterr().err
