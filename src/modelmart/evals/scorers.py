"""Scorers for tasks of one's own: exact match, regex, numeric tolerance, multiple choice, and
a judge model. Each is an async function of (state, target) returning a Score in [0, 1]
(the judge's 1–10 rating stays on its scale)."""

from __future__ import annotations

import re
import string
from decimal import Decimal, InvalidOperation
from typing import Any

from .task import Score, TaskState

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+")
_LETTER = re.compile(r"(?:answer|option|choice)\s*(?:is|:)?\s*\(?([A-Z])\)?(?![A-Za-z])", re.I)
_LONE_LETTER = re.compile(r"(?<![A-Za-z])\(?([A-Z])\)?(?![A-Za-z])")
RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
RATING_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")
RATING_PLAIN = re.compile(r"Rating:\s*(\d+\.?\d*)")


def normalize(text: str) -> str:
    text = " ".join(str(text).split()).casefold()
    return text.strip().rstrip(".").strip()


def _targets(target: Any) -> list[str]:
    return [str(t) for t in target] if isinstance(target, (list, tuple)) else [str(target)]


async def exact(state: TaskState, target: Any) -> Score:
    answer = normalize(state.output)
    ok = any(answer == normalize(t) for t in _targets(target))
    return Score(float(ok), answer=answer)


async def includes(state: TaskState, target: Any) -> Score:
    answer = normalize(state.output)
    ok = any(normalize(t) in answer for t in _targets(target))
    return Score(float(ok), answer=answer)


async def regex(state: TaskState, target: Any) -> Score:
    """The target is a pattern (or several); a search anywhere in the output passes."""
    for pattern in _targets(target):
        match = re.search(pattern, state.output, re.S)
        if match:
            return Score(1.0, answer=match.group(0))
    return Score(0.0, answer=None)


def last_number(text: str) -> Decimal | None:
    for raw in reversed(_NUMBER.findall(text)):
        try:
            return Decimal(raw.replace(",", ""))
        except InvalidOperation:
            continue
    return None


def numeric(tolerance: float = 1e-6, relative: bool = False):
    """The last number in the output, within ``tolerance`` of the target (absolute, or
    relative to the target's size)."""
    tol = Decimal(str(tolerance))

    async def score(state: TaskState, target: Any) -> Score:
        got = last_number(state.output)
        if got is None:
            return Score(0.0, answer=None, explanation="no number in the output")
        want = Decimal(str(target))
        allowed = tol * abs(want) if relative else tol
        return Score(float(abs(got - want) <= allowed), answer=str(got))
    return score


def letter_of(text: str, n_choices: int) -> str | None:
    valid = set(string.ascii_uppercase[:n_choices])
    stated = [m for m in _LETTER.findall(text) if m.upper() in valid]
    if stated:
        return stated[-1].upper()
    lone = [m for m in _LONE_LETTER.findall(text) if m in valid]
    return lone[0] if lone else None


async def choice(state: TaskState, target: Any) -> Score:
    """Multiple choice: the sample's ``metadata["choices"]`` were shown as A, B, C...; the
    target is the right letter or the right choice's text."""
    choices = state.sample.metadata.get("choices") or []
    letter = letter_of(state.output, len(choices))
    want = str(target)
    if want not in string.ascii_uppercase[:len(choices)] and want in choices:
        want = string.ascii_uppercase[choices.index(want)]
    return Score(float(letter == want), answer=letter)


def choices_prompt(question: str, choices: list[str]) -> str:
    lines = [question, ""] + [f"{string.ascii_uppercase[i]}) {c}" for i, c in enumerate(choices)]
    return "\n".join(lines + ["", "Answer with the letter of the right choice."])


def parse_rating(text: str) -> float | None:
    """A judge's ``[[rating]]`` (FastChat's format), with its two fallbacks."""
    for pattern in (RATING, RATING_BACKUP, RATING_PLAIN):
        match = pattern.search(text)
        if match:
            value = float(match.group(1))
            return value if 1 <= value <= 10 else None
    return None


JUDGE_TEMPLATE = (
    "[Instruction]\nPlease act as an impartial judge and evaluate the response of an AI "
    "assistant to the question below, against the reference answer. Begin with a short "
    "explanation. Then rate the response on a scale of 1 to 10 by strictly following this "
    "format: \"[[rating]]\", for example: \"Rating: [[5]]\".\n\n[Question]\n{question}\n\n"
    "[Reference answer]\n{reference}\n\n[The Start of Assistant's Answer]\n{answer}\n"
    "[The End of Assistant's Answer]")


class JudgeScorer:
    """A catalog model rates the answer 1–10 against the target (a reference answer)."""

    max_tokens = 512

    async def __call__(self, state: TaskState, target: Any) -> Score:
        if state.judge is None:
            raise ValueError("the judge scorer needs --judge MODEL")
        prompt = JUDGE_TEMPLATE.format(question=state.sample.turns[-1], answer=state.output,
                                       reference=target)
        gen = await state.judge([{"role": "user", "content": prompt}],
                                max_tokens=self.max_tokens, temperature=0.0)
        state.judge_generations.append(gen)
        rating = parse_rating(gen.text)
        if rating is None:
            return Score(None, explanation=gen.text[-300:], error_kind="judge_unparsable")
        return Score(rating, answer=str(rating), explanation=gen.text[-300:])

    def judge_calls(self, sample, max_tokens: int) -> list[tuple[int, int]]:
        from .runner import tokens_upper_bound
        text = JUDGE_TEMPLATE + sample.turns[-1] + str(sample.target)
        return [(tokens_upper_bound(text) + max_tokens, self.max_tokens)]
