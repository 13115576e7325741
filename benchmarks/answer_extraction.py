"""Time `extract_answer` on 1 MB of adversarial model output (issue 9 §6: linear-time extraction).

Each input is built to hit a super-linear path of a naive extractor: thousands of unclosed
``<think>`` tags, nested unclosed ``\\boxed{``, runs of "Answer:" markers, braces, whitespace and
sentences. Prints the seconds per input (one extraction, averaged over extract and grade) and the ratio to a plain 1 MB text of the same length
(aim: well under 0.1 s each). Run: ``python benchmarks/answer_extraction.py``.
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
}


def _time(text: str) -> tuple[float, str | None]:
    """Seconds to extract and grade the answer of ``text`` followed by a real answer."""
    output = text + "\nThe answer is 7."
    start = time.perf_counter()
    answer = extract_answer(output)
    grade_output(output, "7")
    return (time.perf_counter() - start) / 2, answer


def main() -> None:
    results = {name: _time(text) for name, text in INPUTS.items()}
    base = results["plain text"][0]
    print(f"{'input (1 MB)':<28} {'seconds':>9} {'x plain':>8}  answer")
    for name, (seconds, answer) in results.items():
        print(f"{name:<28} {seconds:9.4f} {seconds / base:8.1f}  {answer!r}")
    print(f"worst: {max(s for s, _ in results.values()):.4f} s per 1 MB output (aim: well under 0.1 s)")


if __name__ == "__main__":
    main()
