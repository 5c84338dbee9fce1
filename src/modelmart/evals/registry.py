"""Task names → tasks: ``humaneval``, ``mt-bench``, or a path to a JSONL file of one's own."""

from __future__ import annotations

import os

from .task import Task

BUILTIN = ("humaneval", "mt-bench")


def load_task(name: str, *, scorer: str | None = None, options: dict | None = None) -> Task:
    options = dict(options or {})
    if name == "humaneval":
        from .humaneval import humaneval_task
        return humaneval_task()
    if name in ("mt-bench", "mtbench"):
        from .mtbench import mtbench_task
        return mtbench_task()
    if name.endswith(".jsonl") or os.path.exists(name):
        from .custom import custom_task
        return custom_task(name, scorer=scorer, options=options)
    raise ValueError(f"unknown task {name!r}: use {', '.join(BUILTIN)} or a .jsonl file")
