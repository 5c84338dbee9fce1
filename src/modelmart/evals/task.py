"""A task is data plus a way to answer it plus a way to score the answer (Inspect's
``Task(dataset, solver, scorer)``).

A solver turns a sample into answers by calling a model (``Generate``); a scorer is an async
function of the task state and the sample's target that returns a ``Score``. Both are plain
async functions, so a new task is a dataset and two functions, not a class hierarchy.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol

import orjson

BINARY = "binary"  # pass/fail: Wilson intervals, McNemar
SCALE = "scale"  # a number (a judge's 1-10, a partial credit): bootstrap intervals


@dataclass(frozen=True, slots=True)
class Sample:
    id: str
    turns: tuple[str, ...]  # the user's messages, one per turn
    target: Any = None
    system: str | None = None
    group: str | None = None  # items sharing a group are clustered in the intervals
    metadata: dict = field(default_factory=dict)


@dataclass(slots=True)
class Generation:
    """One model call made for an item: the text and the request id its ledger row has."""

    text: str
    request_id: str | None
    finish_reason: str | None = None


class InfraError(Exception):
    """The call failed for reasons that say nothing about the model's quality (timeout, 5xx,
    429, connection): the item is retried, then excluded, never scored as wrong."""

    def __init__(self, kind: str, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.request_id = request_id


class Generate(Protocol):
    async def __call__(self, messages: list[dict], *, max_tokens: int,
                       temperature: float | None = None) -> Generation: ...


@dataclass(slots=True)
class TaskState:
    sample: Sample
    model: str
    answers: list[str] = field(default_factory=list)  # one per turn
    generations: list[Generation] = field(default_factory=list)  # the model's calls
    judge: Generate | None = None
    judge_generations: list[Generation] = field(default_factory=list)

    @property
    def output(self) -> str:
        return self.answers[-1] if self.answers else ""


@dataclass(slots=True)
class Score:
    value: float | None  # None: the item could not be scored (e.g. the judge gave no rating)
    answer: str | None = None  # what was extracted from the output and compared
    explanation: str | None = None
    detail: dict = field(default_factory=dict)
    error_kind: str | None = None  # set with value None: why it was not scored


Solver = Callable[[TaskState, Generate, "Task"], Awaitable[None]]
Scorer = Callable[[TaskState, Any], Awaitable[Score]]


@dataclass(slots=True)
class Task:
    name: str
    samples: list[Sample]
    solver: Solver
    scorer: Scorer
    kind: str = BINARY
    max_tokens: int = 512
    temperature: float = 0.0
    needs_judge: bool = False
    description: str = ""
    # What else decides the scores (prompt templates, scorer options): part of the version.
    config: dict = field(default_factory=dict)
    scale: tuple[float, float] = (0.0, 1.0)

    @property
    def version(self) -> str:
        """A short hash of the samples and the configuration: runs are compared only at
        the same version."""
        digest = hashlib.sha256()
        digest.update(orjson.dumps(self.config, option=orjson.OPT_SORT_KEYS))
        for s in self.samples:
            digest.update(orjson.dumps([s.id, s.turns, s.target, s.system, s.group],
                                       default=str))
        return digest.hexdigest()[:12]


def messages_for(sample: Sample, answers: list[str], turn: int) -> list[dict]:
    """The chat messages of turn ``turn`` (0-based): earlier turns with their answers."""
    messages = [{"role": "system", "content": sample.system}] if sample.system else []
    for i in range(turn + 1):
        messages.append({"role": "user", "content": sample.turns[i]})
        if i < turn:
            messages.append({"role": "assistant", "content": answers[i]})
    return messages


async def chat_turns(state: TaskState, generate: Generate, task: Task) -> None:
    """The default solver: each user turn in order, the model's answers kept in context."""
    for turn in range(len(state.sample.turns)):
        gen = await generate(messages_for(state.sample, state.answers, turn),
                             max_tokens=task.max_tokens, temperature=task.temperature)
        state.generations.append(gen)
        state.answers.append(gen.text)


def prompt_text(sample: Sample) -> str:
    """The item's prompt as stored with each record (system, then the user turns)."""
    parts = [f"[system]\n{sample.system}"] if sample.system else []
    parts += [f"[user]\n{t}" for t in sample.turns]
    return "\n\n".join(parts)


def prompt_hash(sample: Sample) -> str:
    return hashlib.sha256(prompt_text(sample).encode()).hexdigest()[:16]
