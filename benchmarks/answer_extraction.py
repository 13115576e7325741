"""Time `extract_answer` on 1 MB of adversarial model output (issue 9 §6: linear-time extraction).

Each input is built to hit a super-linear path of a naive extractor: thousands of unclosed
``<think>`` tags, nested unclosed ``\\boxed{``, runs of "Answer:" markers, braces, whitespace and
sentences, option letters and option texts. Prints the seconds per input (one extraction, averaged
over extract and grade), without and with a list of options (MATH-V's and MMMU's option conventions),
and the ratio to a plain 1 MB text of the same length (aim: well under 0.1 s each). Run:
``python benchmarks/answer_extraction.py``.
"""

from __future__ import annotations

import time

from rapid_agent.answers import extract_answer, grade_output

SIZE = 1_000_000


def _fill(unit: str) -> str:
    return (unit * (SIZE // len(unit) + 1))[:SIZE]


INPUTS = {
    "plain text": _fill("the cat sat on the mat. "),
    "unclosed <think>": _fill("<think>"),
    "<think></think> pairs": _fill("<think>x</think>"),
    "closing </think> only": _fill("</think>"),
    "nested unclosed \\boxed{": _fill("\\boxed{"),
    "closed \\boxed{1}": _fill("\\boxed{1} "),
    "'Answer:' markers": _fill("Answer: "),
    "'the answer is' markers": _fill("the answer is "),
    "open braces": _fill("{"),
    "whitespace": " " * SIZE,
    "'is' sentences": _fill("x is y is "),
    "JSON short answer": _fill('"short answer": "'),
    "<answer> tags": _fill("<answer>"),
    "letter lines": _fill("A\n"),
    "' D.' sentences": _fill("so we get D. "),
    "option texts": _fill("a Phillips curve "),
    "one long sentence": _fill("a Phillips curve or "),
}
OPTIONS = ["IS curve", "Phillips curve", "LM curve", "Laffer curve"]


def _time(text: str, options: list[str] | None) -> tuple[float, str | None]:
    """Seconds to extract and grade the answer of ``text`` followed by a real answer: a marked one,
    or with ``options`` a sentence ending with an option's text (no marker: every rule runs)."""
    output, gold = (text + " It is a Phillips curve.", "B") if options else (text + "\nThe answer is 7.", "7")
    start = time.perf_counter()
    answer = extract_answer(output, options)
    grade_output(output, gold, options=options)
    return (time.perf_counter() - start) / 2, answer


def main() -> None:
    results = {name: (_time(text, None), _time(text, OPTIONS)) for name, text in INPUTS.items()}
    base = results["plain text"][0][0]
    print(f"{'input (1 MB)':<28} {'seconds':>9} {'x plain':>8} {'options':>9} {'x plain':>8}  answers")
    for name, ((seconds, answer), (with_options, option_answer)) in results.items():
        print(f"{name:<28} {seconds:9.4f} {seconds / base:8.1f} {with_options:9.4f} {with_options / base:8.1f}  "
              f"{answer!r}, {option_answer!r}")
    worst = max(max(a[0], b[0]) for a, b in results.values())
    print(f"worst: {worst:.4f} s per 1 MB output (aim: well under 0.1 s)")


if __name__ == "__main__":
    main()
