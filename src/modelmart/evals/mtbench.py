"""MT-bench (Zheng et al., 2023): 80 two-turn questions graded by a judge model.

The questions, judge prompts and reference answers are FastChat's, vendored unchanged in
``data/mt_bench/`` (Apache-2.0; see NOTICE there). The judge is any catalog model, called
through the gateway like the models under test (and billed to the run).

- Single-answer grading: each turn rated 1–10 (``[[rating]]``) with FastChat's prompts
  (``single-v1`` for turn 1, ``single-v1-multi-turn`` for turn 2; the ``math`` variants with
  the reference answer for math, reasoning and coding); the item's score is the mean of the
  turns that got a rating. A turn without a parsable rating is left out; an item with none
  is excluded, never scored as a zero.
- Pairwise comparison (``judge_pair``): the judge sees both answers twice, in both orders; a
  winner only when both orders agree, else a tie (FastChat's rule against position bias).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import orjson

from .scorers import parse_rating
from .task import SCALE, Generate, Sample, Score, Task, TaskState, chat_turns

NEED_REFERENCE = ("math", "reasoning", "coding")
JUDGE_MAX_TOKENS = 512


def _jsonl(name: str) -> list[dict]:
    text = resources.files("modelmart.evals").joinpath("data", "mt_bench", name).read_bytes()
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


@lru_cache(maxsize=1)
def questions() -> list[dict]:
    return _jsonl("question.jsonl")


@lru_cache(maxsize=1)
def judge_prompts() -> dict[str, dict]:
    return {p["name"]: p for p in _jsonl("judge_prompts.jsonl")}


@lru_cache(maxsize=1)
def references() -> dict[str, list[str]]:
    return {str(r["question_id"]): r["choices"][0]["turns"]
            for r in _jsonl("reference_answer_gpt-4.jsonl")}


def _prompt_name(kind: str, category: str, turn: int) -> str:
    math = category in NEED_REFERENCE
    if kind == "single":
        name = "single-math-v1" if math else "single-v1"
    else:
        name = "pair-math-v1" if math else "pair-v2"
    return name + ("-multi-turn" if turn == 1 else "")


def _fill(template: dict, sample: Sample, values: dict) -> list[dict]:
    q = sample.turns
    ref = references().get(sample.id, ["", ""])
    fields = {"question": q[0], "question_1": q[0], "question_2": q[1] if len(q) > 1 else "",
              "ref_answer_1": ref[0], "ref_answer_2": ref[1] if len(ref) > 1 else "", **values}
    return [{"role": "system", "content": template["system_prompt"]},
            {"role": "user", "content": template["prompt_template"].format(**fields)}]


def single_messages(sample: Sample, answers: list[str], turn: int) -> list[dict]:
    template = judge_prompts()[_prompt_name("single", sample.metadata["category"], turn)]
    values = ({"answer": answers[0]} if turn == 0 else
              {"answer_1": answers[0], "answer_2": answers[1]})
    return _fill(template, sample, values)


def pair_messages(sample: Sample, a: list[str], b: list[str], turn: int) -> list[dict]:
    template = judge_prompts()[_prompt_name("pair", sample.metadata["category"], turn)]
    values = ({"answer_a": a[0], "answer_b": b[0]} if turn == 0 else
              {"answer_a_1": a[0], "answer_a_2": a[1], "answer_b_1": b[0], "answer_b_2": b[1]})
    return _fill(template, sample, values)


class SingleGrade:
    """Scorer: the judge rates each turn 1–10; the score is their mean."""

    async def __call__(self, state: TaskState, target) -> Score:
        if state.judge is None:
            raise ValueError("MT-bench needs a judge: --judge MODEL")
        ratings, notes = [], []
        for turn in range(len(state.answers)):
            gen = await state.judge(single_messages(state.sample, state.answers, turn),
                                    max_tokens=JUDGE_MAX_TOKENS, temperature=0.0)
            state.judge_generations.append(gen)
            ratings.append(parse_rating(gen.text))
            notes.append(gen.text[-400:])
        rated = [r for r in ratings if r is not None]
        detail = {"ratings": ratings, "judgements": notes,
                  "category": state.sample.metadata["category"]}
        if not rated:
            return Score(None, detail=detail, error_kind="judge_unparsable")
        return Score(sum(rated) / len(rated), answer=str(ratings), detail=detail)

    def judge_calls(self, sample: Sample, max_tokens: int) -> list[tuple[int, int]]:
        from .runner import tokens_upper_bound
        calls = []
        for turn in range(len(sample.turns)):
            fake = ["x"] * len(sample.turns)
            text = "".join(m["content"] for m in single_messages(sample, fake, turn))
            calls.append((tokens_upper_bound(text) + (turn + 1) * max_tokens, JUDGE_MAX_TOKENS))
        return calls


def parse_verdict(text: str) -> str | None:
    """'A', 'B' or 'C' (a tie) from FastChat's ``[[A]]`` format; None when absent."""
    found = [v for v in ("A", "B", "C") if f"[[{v}]]" in text]
    return found[0] if len(found) == 1 else None


async def judge_pair(judge: Generate, sample: Sample, a: list[str], b: list[str],
                     turn: int) -> tuple[float | None, list]:
    """1 when a wins, 0 when b wins, 0.5 for a tie (also when the two orders disagree), None
    when the judge gave no verdict in either order. Also returns the judge's generations."""
    first = await judge(pair_messages(sample, a, b, turn), max_tokens=JUDGE_MAX_TOKENS,
                        temperature=0.0)
    second = await judge(pair_messages(sample, b, a, turn), max_tokens=JUDGE_MAX_TOKENS,
                         temperature=0.0)
    v1, v2 = parse_verdict(first.text), parse_verdict(second.text)
    as_a = {"A": 1.0, "B": 0.0, "C": 0.5}
    o1 = as_a.get(v1) if v1 else None
    o2 = 1.0 - as_a[v2] if v2 else None
    if o1 is None and o2 is None:
        outcome = None
    elif o1 is None or o2 is None or o1 != o2:
        outcome = 0.5  # disagreeing (or half-missing) orders: position decided it, a tie
    else:
        outcome = o1
    return outcome, [first, second]


def mtbench_task(max_tokens: int = 1024) -> Task:
    samples = [Sample(id=str(q["question_id"]), turns=tuple(q["turns"]),
                      metadata={"category": q["category"]}, group=None)
               for q in questions()]
    return Task(name="mt-bench", samples=samples, solver=chat_turns, scorer=SingleGrade(),
                kind=SCALE, max_tokens=max_tokens, temperature=0.7, needs_judge=True,
                description="MT-bench: 80 two-turn questions, single-answer grading 1-10",
                config={"judge_prompts": "fastchat single-v1", "max_tokens": max_tokens},
                scale=(1.0, 10.0))
