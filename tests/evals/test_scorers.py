"""Scorers of custom tasks, MT-bench's judge parsing and position swapping."""

from __future__ import annotations

import json

import pytest

from modelmart.evals import custom, mtbench, scorers
from modelmart.evals.task import Generation, Sample, TaskState


def _state(output: str, sample: Sample | None = None) -> TaskState:
    return TaskState(sample=sample or Sample("1", ("q",)), model="m", answers=[output])


async def test_exact_regex_numeric_choice():
    assert (await scorers.exact(_state("  Paris. "), "paris")).value == 1.0
    assert (await scorers.exact(_state("Paris, France"), ["paris", "PARIS"])).value == 0.0
    assert (await scorers.regex(_state("id: AB-123"), r"[A-Z]{2}-\d+")).value == 1.0
    assert (await scorers.regex(_state("none"), r"\d")).value == 0.0
    num = scorers.numeric(0.01)
    assert (await num(_state("It is about 3.14159, so 3.141"), "3.14")).value == 1.0
    assert (await num(_state("1,234 apples"), 1234)).value == 1.0
    assert (await num(_state("3.2"), 3.14)).value == 0.0
    assert (await num(_state("no idea"), 3)).value == 0.0
    rel = scorers.numeric(0.05, relative=True)
    assert (await rel(_state("1040"), 1000)).value == 1.0
    sample = Sample("c", ("q",), metadata={"choices": ["4", "6", "7"]})
    assert (await scorers.choice(_state("The answer is C.", sample), "C")).value == 1.0
    assert (await scorers.choice(_state("(B) because", sample), "C")).value == 0.0
    assert (await scorers.choice(_state("Answer: C", sample), "7")).value == 1.0


def test_custom_task_from_jsonl(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in [
        {"task": {"name": "arith", "scorer": "numeric", "tolerance": 0.5}},
        {"id": "a", "input": "2+2?", "target": 4, "group": "g1"},
        {"id": "b", "input": ["hi", "and 3+3?"], "target": 6},
        {"id": "c", "input": "pick", "choices": ["x", "y"], "target": "B"},
    ]) + "\n")
    task = custom.custom_task(str(path))
    assert task.name == "arith" and [s.id for s in task.samples] == ["a", "b", "c"]
    assert task.samples[1].turns == ("hi", "and 3+3?") and task.samples[0].group == "g1"
    assert "B) y" in task.samples[2].turns[0]
    assert custom.custom_task(str(path), scorer="choice").version != task.version
    with pytest.raises(ValueError, match="unknown scorer"):
        custom.custom_task(str(path), scorer="vibes")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x"}\n')
    with pytest.raises(ValueError, match="line 1"):
        custom.custom_task(str(bad))


def test_mt_bench_data_and_rating_parsing():
    qs = mtbench.questions()
    assert len(qs) == 80 and all(len(q["turns"]) == 2 for q in qs)
    assert len(mtbench.judge_prompts()) == 8
    assert scorers.parse_rating("Good answer. Rating: [[7]]") == 7.0
    assert scorers.parse_rating("Rating: [8.5]") == 8.5
    assert scorers.parse_rating("Rating: 6") == 6.0
    assert scorers.parse_rating("[[11]]") is None and scorers.parse_rating("great") is None
    task = mtbench.mtbench_task()
    math = next(s for s in task.samples if s.metadata["category"] == "math")
    messages = mtbench.single_messages(math, ["a1", "a2"], 1)
    assert "Reference answer" in messages[1]["content"] and "a2" in messages[1]["content"]


class ScriptedJudge:
    """Answers a pairwise prompt by which answer text it sees first."""

    def __init__(self, rule):
        self.rule = rule
        self.calls = []

    async def __call__(self, messages, *, max_tokens, temperature=None):
        text = messages[-1]["content"]
        self.calls.append(text)
        first = "ALPHA" if text.index("ALPHA") < text.index("BETA") else "BETA"
        return Generation(self.rule(first), f"r{len(self.calls)}")


async def test_pairwise_swaps_positions_and_ties_when_orders_disagree():
    sample = mtbench.mtbench_task().samples[0]
    a, b = ["ALPHA one", "ALPHA two"], ["BETA one", "BETA two"]
    always_alpha = ScriptedJudge(lambda first: "[[A]]" if first == "ALPHA" else "[[B]]")
    outcome, gens = await mtbench.judge_pair(always_alpha, sample, a, b, 0)
    assert outcome == 1.0 and len(gens) == 2
    # the second call showed the answers the other way round
    assert always_alpha.calls[0].index("ALPHA") < always_alpha.calls[0].index("BETA")
    assert always_alpha.calls[1].index("BETA") < always_alpha.calls[1].index("ALPHA")
    position_biased = ScriptedJudge(lambda first: "[[A]]")
    assert (await mtbench.judge_pair(position_biased, sample, a, b, 1))[0] == 0.5
    mute = ScriptedJudge(lambda first: "no idea")
    assert (await mtbench.judge_pair(mute, sample, a, b, 0))[0] is None
    beta = ScriptedJudge(lambda first: "[[B]]" if first == "ALPHA" else "[[A]]")
    assert (await mtbench.judge_pair(beta, sample, a, b, 0))[0] == 0.0


async def test_single_grade_excludes_an_item_without_any_rating():
    sample = mtbench.mtbench_task().samples[0]

    async def judge(messages, *, max_tokens, temperature=None):
        return Generation("I refuse to rate.", "r")
    state = TaskState(sample=sample, model="m", answers=["x", "y"], judge=judge)
    score = await mtbench.SingleGrade()(state, None)
    assert score.value is None and score.error_kind == "judge_unparsable"

    async def judge2(messages, *, max_tokens, temperature=None):
        turn2 = "Assistant's Conversation" in messages[-1]["content"] or "answer to the second" in messages[0]["content"]
        return Generation("Rating: [[4]]" if turn2 else "[[8]]", "r")
    state = TaskState(sample=sample, model="m", answers=["x", "y"], judge=judge2)
    score = await mtbench.SingleGrade()(state, None)
    assert score.value == 6.0 and score.detail["ratings"] == [8.0, 4.0]
