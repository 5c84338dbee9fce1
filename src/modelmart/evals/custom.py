"""Tasks of one's own, from a JSONL file: one item a line.

    {"id": "q1", "input": "What is 6 x 7?", "target": "42"}
    {"id": "q2", "input": ["first turn", "second turn"], "target": "...", "group": "doc-3"}
    {"id": "q3", "input": "Which is a prime?", "choices": ["4", "6", "7"], "target": "C"}

An optional first line ``{"task": {...}}`` sets the task: ``name``, ``scorer`` (exact,
includes, regex, numeric, choice, judge), ``tolerance`` and ``relative`` (numeric),
``system``, ``max_tokens``. ``--scorer`` on the command line wins over the file.
"""

from __future__ import annotations

import os
from typing import Any

import orjson

from . import scorers
from .task import BINARY, SCALE, Sample, Task, chat_turns

SCORERS = ("exact", "includes", "regex", "numeric", "choice", "judge")


def _scorer(name: str, options: dict):
    if name == "exact":
        return scorers.exact
    if name == "includes":
        return scorers.includes
    if name == "regex":
        return scorers.regex
    if name == "numeric":
        return scorers.numeric(float(options.get("tolerance", 1e-6)),
                               bool(options.get("relative", False)))
    if name == "choice":
        return scorers.choice
    if name == "judge":
        return scorers.JudgeScorer()
    raise ValueError(f"unknown scorer {name!r}: use one of {', '.join(SCORERS)}")


def _sample(data: Any, line: int, system: str | None) -> Sample:
    if not isinstance(data, dict) or "input" not in data:
        raise ValueError(f"line {line}: expected an object with 'input' (and 'target')")
    turns = data["input"]
    turns = (turns,) if isinstance(turns, str) else tuple(turns)
    if not turns or not all(isinstance(t, str) for t in turns):
        raise ValueError(f"line {line}: 'input' must be a string or a list of strings")
    metadata = dict(data.get("metadata") or {})
    if data.get("choices"):
        metadata["choices"] = list(data["choices"])
        turns = turns[:-1] + (scorers.choices_prompt(turns[-1], metadata["choices"]),)
    return Sample(id=str(data.get("id", line)), turns=turns, target=data.get("target"),
                  system=data.get("system", system), group=data.get("group"),
                  metadata=metadata)


def custom_task(path: str, *, scorer: str | None = None, options: dict | None = None) -> Task:
    if not os.path.exists(path):
        raise ValueError(f"no task file {path!r}")
    header: dict = {}
    samples = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"{path}, line {number}: not JSON ({exc})") from None
            if number == 1 and isinstance(data, dict) and "task" in data:
                header = dict(data["task"])
                continue
            samples.append(_sample(data, number, header.get("system")))
    if not samples:
        raise ValueError(f"{path} has no items")
    if len({s.id for s in samples}) != len(samples):
        raise ValueError(f"{path}: item ids must be unique")
    settings = {**header, **(options or {})}
    name = scorer or settings.get("scorer") or "exact"
    return Task(name=settings.get("name") or os.path.splitext(os.path.basename(path))[0],
                samples=samples, solver=chat_turns, scorer=_scorer(name, settings),
                kind=SCALE if name == "judge" else BINARY,
                max_tokens=int(settings.get("max_tokens", 512)), needs_judge=name == "judge",
                description=f"custom task from {os.path.basename(path)}",
                config={"scorer": name, **{k: v for k, v in settings.items()
                                           if k in ("tolerance", "relative", "system")}},
                scale=(1.0, 10.0) if name == "judge" else (0.0, 1.0))
