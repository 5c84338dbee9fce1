"""Thousands of mutated bodies to every model surface, over loopback HTTP, against a gateway
in front of fake upstreams that answer normally. No answer may be a 5xx, show a traceback, a
path or a secret, or refuse in another API's dialect; the gateway must still answer
``/health`` afterwards. Runs are reproducible and bounded (``runs.py``)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from . import seeds
from .client import Clock
from .conftest import CHAT_MODELS, EMBED_MODELS
from .mutate import mutated
from .runs import fuzz_settings


def seeds_for(make, models) -> list:
    """Every seed for each model, and the first seed for a model the catalog lacks."""
    return [body for model in models for body in make(model)] + make("no-such-model")[:1]




def report(tally, surface: str) -> None:
    problems = tally.of(surface)
    assert not problems, "\n".join(
        f"{p.what}: {p.status} {p.answer[:300]!r}\n  for {p.request[:300]!r}"
        for p in problems[:10])


def _fuzz_json_surface(sender, tally, surface: str, path: str, dialect: str, bodies,
                       examples: int, headers: dict | None = None) -> None:
    @fuzz_settings(examples)
    @given(bodies)
    def one(body: bytes) -> None:
        tally.judge(surface, dialect, body, sender.post(path, body, headers))

    with Clock(tally, surface):
        one()
    report(tally, surface)


def test_openai_chat(sender, tally):
    _fuzz_json_surface(sender, tally, "openai-chat", "/v1/chat/completions", "openai",
                       mutated(seeds_for(seeds.openai_chat, CHAT_MODELS)), 1200)


def test_anthropic_messages(sender, tally):
    _fuzz_json_surface(sender, tally, "anthropic-messages", "/v1/messages", "anthropic",
                       mutated(seeds_for(seeds.anthropic_messages, CHAT_MODELS)), 1200,
                       headers={"anthropic-version": "2023-06-01"})


def test_openai_responses(sender, tally):
    _fuzz_json_surface(sender, tally, "openai-responses", "/v1/responses", "openai",
                       mutated(seeds_for(seeds.openai_responses, CHAT_MODELS)), 1000)


def test_embeddings(sender, tally):
    _fuzz_json_surface(sender, tally, "embeddings", "/v1/embeddings", "openai",
                       mutated(seeds_for(seeds.embeddings, (*EMBED_MODELS, *CHAT_MODELS[:1]))),
                       400)


MODEL_IDS = (*CHAT_MODELS, "no-such-model", "a/b", "arn:aws:bedrock:us-east-1::x%2Fy", "%00",
             "é", "x" * 300)


def test_bedrock_converse(sender, tally):
    bodies = mutated(seeds.bedrock_converse(""))

    @fuzz_settings(1200)
    @given(st.sampled_from(MODEL_IDS), st.sampled_from(("converse", "converse-stream")), bodies)
    def one(model_id: str, action: str, body: bytes) -> None:
        tally.judge("bedrock-converse", "bedrock", body, sender.converse(model_id, action, body))

    with Clock(tally, "bedrock-converse"):
        one()
    report(tally, "bedrock-converse")
