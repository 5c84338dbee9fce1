"""Fake OpenAI upstreams that answer an arithmetic task by rule: some right, some wrong, some
failing, the same way every time (by the question's text, whatever the order of calls)."""

from __future__ import annotations

import json
import re
import threading

from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.script import Reply

UPSTREAM_KEY = "sk-upstream-eval"
ITEMS = [(a, b) for a in range(2, 14) for b in (3, 4)][:20]


def task_file(path) -> str:
    lines = [{"task": {"name": "arith", "scorer": "numeric"}}]
    lines += [{"id": f"q{a}-{b}", "input": f"What is {a} + {b}? Answer with the number only.",
               "target": a + b} for a, b in ITEMS]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return str(path)


class RuleModel(FakeOpenAI):
    """``right(a, b)`` decides the answer; ``fail(a, b, n)`` (n: calls so far for this
    question) returns an HTTP status to fail with, or None."""

    def __init__(self, right, fail=lambda a, b, n: None, delay: float = 0.0) -> None:
        super().__init__(api_key=UPSTREAM_KEY)
        self.right, self.fail, self.delay = right, fail, delay
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()

    def next_reply(self, text: str) -> Reply:
        a, b = map(int, re.findall(r"\d+", text)[:2])
        with self.lock:
            n = self.calls.get(text, 0)
            self.calls[text] = n + 1
        status = self.fail(a, b, n)
        if status is not None:
            return Reply(error_status=status, error_message="scripted outage")
        answer = a + b if self.right(a, b) else a + b + 1
        return Reply(text=f"{answer}", input_tokens=20 + a, output_tokens=3, delay=self.delay)


def catalog(path, fakes: dict) -> str:
    import yaml

    models = {name: {"provider": "openai", "model": "gpt-4o-mini",
                     "base_url": f"{fake.base_url}/v1", "api_key": UPSTREAM_KEY,
                     "price": {"markup": "0.5"}, "retries": {"attempts": 1}}
              for name, fake in fakes.items()}
    path.write_text(yaml.safe_dump({"bundled_model": False, "models": models}))
    return str(path)
