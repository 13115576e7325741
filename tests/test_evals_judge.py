"""The LLM judge with the official pipelines' prompts: which prompt each benchmark's samples get, what
the official prompts send and how their replies are read, MathVerse's extract-then-score, judge calls
cached and resumed, and one failing judge call kept to its own sample. Scripted chat models stand in
for the judge (`tests/test_vllm.py` runs it against a real vLLM server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from evals.config import BenchmarkRef, EvalConfig
from evals.judge import Judge, choose_prompt, prompt_for
from evals.judge_prompts import GENERIC, MATHVERSE, MATHVISTA, MCQ
from evals.run import configs_from_args, parser
from evals.runner import RunOptions, run_eval
from evals.sample import Sample
from evals.store import read_records
from evals.tasks import get_benchmark
from rapid_agent.testing import ScriptedChatModel

FIXTURES = Path(__file__).parent / "fixtures" / "evals"


def fixture(name: str) -> list[Sample]:
    return get_benchmark(name).load(path=FIXTURES / name)


def sample(benchmark: str, **fields) -> Sample:
    return Sample(**({"id": "1", "benchmark": benchmark, "question": "Which one?", "answer": "A"} | fields))


def text(messages) -> str:
    return "\n".join(m.text for m in messages)


# --------------------------------------------------------------------------- which prompt


@pytest.mark.parametrize(("item", "mode", "prompt"), [
    (sample("mathvista"), "official", "mathvista"),
    (sample("mathverse"), "official", "mathverse"),
    (sample("mathvision"), "official", "mathvision"),
    (sample("dynamath"), "official", "dynamath"),
    (sample("logicvista"), "official", "logicvista"),  # reads letters from the question alone
    (sample("wemath", options=("6", "8")), "official", "wemath"),
    (sample("mmstar", options=("red", "blue")), "official", "vlmevalkit-mcq"),
    (sample("mmmu", options=("red", "blue")), "official", "vlmevalkit-mcq"),
    (sample("mmmu", answer="24"), "official", "generic"),  # an open MMMU question: the matcher needs options
    (sample("mmstar"), "official", "generic"),  # options printed only in the image
    (sample("bundled"), "official", "generic"),  # no official pipeline
    (sample("miniworld"), "official", "generic"),
    (sample("mathverse"), "generic", "generic"),
    (sample("mmstar", options=("red", "blue")), "generic", "generic"),
])
def test_each_benchmark_gets_its_official_prompt_or_the_generic_one(item, mode, prompt):
    assert prompt_for(item, mode).name == prompt


@pytest.mark.parametrize(("benchmark", "mode", "says"), [
    ("mathvista", "official", "official mathvista prompt (lupantech/MathVista:evaluation/prompts/ext_ans.py)"),
    ("mathverse", "official", "extract, then score"),
    ("mathvision", "official", "the MATH-V authors' evaluation/evaluate.py has no LLM step"),
    ("mmmu", "official", "open ones get the generic prompt"),
    ("bundled", "official", "generic prompt (rapid-agent (evals/judge_prompts.py)); no official pipeline"),
    ("mathvista", "generic", "generic prompt (rapid-agent (evals/judge_prompts.py)); --judge-prompt generic"),
])
def test_the_choice_of_prompt_names_its_pipeline_or_why_the_generic_one_stands_in(benchmark, mode, says):
    assert says in choose_prompt(benchmark, mode).describe()


def test_the_flag_picks_the_prompts_official_by_default_and_only_a_judged_config_records_it():
    base = ["--captioner", "tiny", "--reasoner", "tiny", "--benchmark", "bundled"]
    default, = configs_from_args(parser().parse_args([*base, "--judge", "tiny"]))
    generic, = configs_from_args(parser().parse_args([*base, "--judge", "tiny", "--judge-prompt", "generic"]))
    unjudged, = configs_from_args(parser().parse_args(base))
    assert (default.judge_prompt, generic.judge_prompt) == ("official", "generic")
    assert default.digest() != generic.digest()  # other prompts, other results
    assert "judge_prompt" not in unjudged.identity()  # without a judge the digest is what it was before the flag
    with pytest.raises(SystemExit):
        parser().parse_args([*base, "--judge-prompt", "own"])


# --------------------------------------------------------------------------- what the official prompts send


def test_mathvista_sends_its_few_shot_prompt_then_the_query_and_the_response():
    item = fixture("mathvista")[0]  # multiple choice: 3 / 4 / 5
    message, = MATHVISTA.extract(item, "It shows four.")
    assert message.type == "human"  # the whole prompt in one user message, as the official pipeline sends it
    assert message.text.startswith("Please read the following example. Then extract the answer")
    assert message.text.count("Extracted answer:") == 6  # five in-context examples and the test slot
    assert message.text.endswith(
        "Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.\n"
        "Question: Which value does the bar show?\nChoices:\n(A) 3\n(B) 4\n(C) 5\n\nIt shows four.\n\nExtracted answer: "
    )


def test_mathverse_extracts_then_scores_the_extraction_against_the_gold_answer():
    item = fixture("mathverse")[6]  # free-form, gold 4\pi
    extract, = MATHVERSE.extract(item, "So the area is 4 pi.")
    assert extract.text.endswith("7.\n\nModel response: 'So the area is 4 pi.'\nExtracted Answer: ")
    score, = MATHVERSE.score(item, "Extracted Answer: 4\\pi")  # the prefix a judge repeats is dropped
    assert "B:2\u221a{3}" in score.text  # the template is formatted: {{3}} reads {3}, as in the official prompt
    assert score.text.endswith(
        "[Question]: The circle has radius 2. Find its area.\n[Standard Answer]: 4\\pi\n[Model_answer] : 4\\pi\nJudgement:"
    )


def test_the_option_matcher_lists_the_options_as_vlmevalkit_does():
    item = fixture("mmstar")[0]
    message, = MCQ.extract(item, "It is blue.")
    assert "Options: There are several options: \nA. red\nB. green\nC. blue\nD. black\n\nAnswer: It is blue.\n" \
        "Your output: " in message.text


def test_generic_prompt_keeps_a_system_message_and_the_tail_of_long_responses():
    system, user = GENERIC.extract(sample("bundled"), "x" * 10_000 + " the end")
    assert system.type == "system" and user.text.count("x") == 6000 - len(" the end")


@pytest.mark.parametrize(("item", "reply", "answer"), [
    (sample("mathvista"), "Extracted answer: 14", "14"),
    (sample("mathvista"), "[2007, 2008]", "[2007, 2008]"),
    (sample("mathverse"), "Extracted Answer: (-2, 1)", "(-2, 1)"),
    (sample("mathverse"), "null", None),
    (sample("mathvision"), " 1.45", "1.45"),
    (sample("dynamath", answer_type="multiple_choice"), "b", "B"),
    (sample("dynamath", answer_type="multiple_choice"), "(C)", "C"),
    (sample("dynamath", answer_type="multiple_choice"), "The option is C", None),  # the E of THE counts too
    (sample("dynamath", answer_type="multiple_choice"), "A or B", None),  # two letters: unparsed
    (sample("dynamath", answer_type="float", answer="0.5"), "0.500 units", "0.5"),
    (sample("dynamath", answer_type="float", answer="0.5"), "2\u03c0", str(2 * 3.141592653589793)),
    (sample("dynamath", answer_type="float", answer="0.5"), "about half", None),
    (sample("dynamath", answer="odd"), "odd", "odd"),
    (sample("logicvista"), "CA", "A, C"),  # several letters: a set
    (sample("logicvista"), "Z", None),
    (sample("logicvista"), "The answer is A", None),  # not letters only: unparsed, as VLMEvalKit's
    (sample("mmstar", options=("red", "blue")), "B", "B"),
    (sample("mmstar", options=("red", "blue")), "Z", None),
    (sample("bundled"), "Answer: 12", "12"),
    (sample("bundled"), "Answer: none", None),
])
def test_replies_are_read_as_their_pipelines_read_them(item, reply, answer):
    assert prompt_for(item, "official").read(item, reply) == answer


# --------------------------------------------------------------------------- through the harness


def judged_config(benchmark: str, **overrides) -> EvalConfig:
    """A blind run (the reasoner alone: no captioner needed) with judge 'judge'."""
    ref = BenchmarkRef.parse(f"{benchmark}={FIXTURES / benchmark}")
    return EvalConfig(**({"captioner": "cap", "reasoners": ("r",), "benchmarks": (ref,), "modes": ("blind",),
                          "judge": "judge"} | overrides))


def run(tmp_path: Path, config: EvalConfig, reasoner, judge, folder: str = "run"):
    # one request at a time: identical judge calls (MathVerse's versions share a question) then hit the
    # cache in a fixed order, so call counts are exact
    options = RunOptions(output_dir=tmp_path / folder, cache_path=tmp_path / "cache.sqlite", progress=False, show=0,
                         retry_initial_s=0.001, concurrency=1)
    result = run_eval(config, options, models={"r": reasoner, "judge": judge})
    return result, {r.id: r for r in read_records(tmp_path / folder / "samples.jsonl").values()}


def mathverse_judge(**kwargs) -> ScriptedChatModel:
    """Extracts '4\\pi' from 'four pi', 'null' otherwise; scores 1 when the extraction is the gold."""

    def respond(messages) -> str:
        prompt = text(messages)
        if prompt.rstrip().endswith("Judgement:"):
            return "Judgement: 1" if "[Model_answer] : 4\\pi\nJudgement:" in prompt else "0"
        return "Extracted Answer: 4\\pi" if "four pi" in prompt else "null"

    return ScriptedChatModel(respond=respond, **kwargs)


def test_mathverse_judge_scores_and_its_judgement_decides_where_the_rules_find_no_answer(tmp_path):
    # rows 7 and 8: gold 4\pi (free-form); every other row gets an answer the rules cannot read either
    reasoner = ScriptedChatModel(respond=lambda m: "I would say it comes to four pi overall" if "area" in text(m)
                                 else "Hmm, I would go with the second option, I think.")
    judge = mathverse_judge()
    result, records = run(tmp_path, judged_config("mathverse"), reasoner, judge)
    assert result.errors == 0 and len(records) == 8
    # extract, then score, for every sample; a call asked before (the same response to the same question) is cached
    assert result.judge_calls + result.judge_cache_hits == 16 and len(judge.calls) == result.judge_calls == 6
    area = records["7"]
    assert area.correct and area.method == "judge:score" and area.prediction == "4\\pi"
    assert (area.judge.answer, area.judge.judgement, area.judge.rule_correct) == ("4\\pi", True, False)
    assert area.judge.prompt == MATHVERSE.label and area.judge.score_output == "Judgement: 1"
    vague = records["1"]  # 'null' extracted and scored 0: the judge's verdict is wrong, no answer
    assert not vague.correct and vague.prediction is None and vague.judge.judgement is False
    assert result.summary.runs["r [blind]"].benchmarks["mathverse"].judge.changed == 1  # row 7 only: row 8 is an image question
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Judge vs rules" in report and "| r [blind] | mathverse | 8 | 0 | 1 | 1 | 7 |" in report
    assert "Judge `judge`, prompts:\n- mathverse: official mathverse prompt (ZrrSkywalker/MathVerse" in report


def test_a_rerun_over_the_same_outputs_makes_no_judge_call_and_another_prompt_misses(tmp_path):
    reasoner = ScriptedChatModel(respond=lambda m: "Probably the blue one.")
    judge = ScriptedChatModel(respond=lambda m: "B")
    first, _ = run(tmp_path, judged_config("mmstar"), reasoner, judge, "first")
    second, records = run(tmp_path, judged_config("mmstar"), reasoner, judge, "second")  # another folder, one cache
    assert (first.judge_calls, first.judge_cache_hits) == (3, 0)
    assert (second.judge_calls, second.judge_cache_hits, len(judge.calls)) == (0, 3, 3)
    assert all(r.judge.output == "B" and r.judge.prompt == MCQ.label for r in records.values())
    generic, records = run(tmp_path, judged_config("mmstar", judge_prompt="generic"), reasoner, judge, "generic")
    assert (generic.judge_calls, len(judge.calls)) == (3, 6)  # another prompt: other calls
    assert all(r.judge.prompt == GENERIC.label for r in records.values())


def test_a_failed_judge_call_stays_with_its_sample_and_is_retried_on_the_next_run(tmp_path):
    broken = {"attempts": 0}

    def respond(messages) -> str:
        prompt = text(messages)
        if "How many dots" in prompt and broken["attempts"] == 0:
            broken["attempts"] += 1
            raise ValueError("judge backend broke")
        return "Judgement: maybe" if prompt.rstrip().endswith("Judgement:") else "C"

    judge = ScriptedChatModel(respond=respond)
    reasoner = ScriptedChatModel(respond=lambda m: "It might be the third.")
    result, records = run(tmp_path, judged_config("mmstar"), reasoner, judge)
    assert result.errors == 0 and result.judge_calls == 2  # the failed call is neither counted nor cached
    assert records["1"].judge.error == "ValueError: judge backend broke" and records["1"].judge.correct is None
    assert records["1"].prediction is None and not records["1"].correct  # the rules' verdict stands
    assert records["0"].judge.answer == "C" and records["0"].correct  # the others are judged as usual
    again, _ = run(tmp_path, judged_config("mmstar"), reasoner, judge, "again")
    assert (again.judge_calls, again.judge_cache_hits) == (1, 2)  # only the failed call is made again

    # MathVerse: an unreadable judgement is the judge's error; the extraction is kept
    result, records = run(tmp_path, judged_config("mathverse"), reasoner, judge, "mathverse")
    verdict = records["7"].judge
    assert verdict.answer == "C" and verdict.judgement is None and verdict.correct is None
    assert verdict.error == "unreadable judgement 'Judgement: maybe'"


def test_a_reasoning_judges_thinking_is_left_out_of_its_reply(tmp_path):
    judge = ScriptedChatModel(respond=lambda m: "<think>Options A or C? It says the third.</think>C")
    _, records = run(tmp_path, judged_config("mmstar"), ScriptedChatModel(respond=lambda m: "It might be the third."), judge)
    assert records["0"].judge.answer == "C" and records["0"].correct


def test_the_judge_alone_reads_one_response_once_with_a_cache(tmp_path):
    from evals.cache import PerceptionCache

    cache = PerceptionCache(tmp_path / "cache.sqlite")
    model = ScriptedChatModel(respond=lambda m: "Extracted answer: 4")
    item = fixture("mathvista")[0]
    judge = Judge(model, "j", cache=cache)
    first, second = judge.extract(item, "four"), judge.extract(item, "four")
    assert first == second and first.answer == "4" and len(model.calls) == 1
    assert (judge.calls, judge.cache_hits) == (1, 1)
    judge.extract(item, "five")  # another response: another call
    assert len(model.calls) == 2
    cache.close()
