"""The providers of the matrix: one catalog model each, and per provider the extractors that
read what reached its fake upstream (``received[-1].body``) in that provider's own shape."""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.bedrock_server import FakeBedrock
from tests.fakes.gemini_server import FakeGemini
from tests.fakes.openai_server import FakeOpenAI

PROVIDERS = ("local", "openai", "anthropic", "bedrock", "gemini")
FAKED = PROVIDERS[1:]

OPENAI_KEY = "sk-conformance-upstream"
ANTHROPIC_KEY = "sk-ant-conformance"
GEMINI_KEY = "AIza-conformance"
AWS_ACCESS_KEY, AWS_SECRET = "AKIACONFORMANCE00001", "conformance/secret/key/0000000000000000"

MODEL = {p: f"conf-{p}" for p in PROVIDERS}
UPSTREAM_MODEL = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-5",
                  "bedrock": "anthropic.claude-3-5-haiku-20241022-v1:0",
                  "gemini": "gemini-2.5-flash"}


def start_fakes() -> dict[str, Any]:
    return {
        "openai": FakeOpenAI(api_key=OPENAI_KEY).start(),
        "anthropic": FakeAnthropic(api_key=ANTHROPIC_KEY).start(),
        "bedrock": FakeBedrock(access_key=AWS_ACCESS_KEY, secret_key=AWS_SECRET,
                               region="us-east-1").start(),
        "gemini": FakeGemini(api_key=GEMINI_KEY).start(),
    }


def catalog(fakes: dict[str, Any]) -> dict:
    # Every model is priced explicitly (provider cost and customer price), so billing runs
    # on every call; one attempt per request so each scripted error is answered exactly once,
    # and no cooldown so a run of error tests never sets a deployment aside.
    routing = {"retries": {"attempts": 1, "max_attempts": 1},
               "cooldown": {"failures": 10_000, "seconds": 0}}
    cost = {"input": 1, "output": 2, "caching": False}
    price = {"input": 2, "output": 5, "caching": False}
    models: dict[str, dict] = {
        MODEL["local"]: {"provider": "local", "options": {"default_max_tokens": 32, "n_threads": 1},
                         "cost": {"input": 0, "output": 0, "caching": False},
                         "price": {"input": "0.01", "output": "0.02", "caching": False},
                         **routing},
        MODEL["openai"]: {"provider": "openai", "model": UPSTREAM_MODEL["openai"],
                          "base_url": f"{fakes['openai'].base_url}/v1", "api_key": OPENAI_KEY},
        MODEL["anthropic"]: {"provider": "anthropic", "model": UPSTREAM_MODEL["anthropic"],
                             "base_url": fakes["anthropic"].base_url, "api_key": ANTHROPIC_KEY},
        MODEL["bedrock"]: {"provider": "bedrock", "model": UPSTREAM_MODEL["bedrock"],
                           "base_url": fakes["bedrock"].base_url,
                           "options": {"aws_access_key_id": AWS_ACCESS_KEY,
                                       "aws_secret_access_key": AWS_SECRET,
                                       "region": "us-east-1"}},
        MODEL["gemini"]: {"provider": "gemini", "model": UPSTREAM_MODEL["gemini"],
                          "base_url": fakes["gemini"].base_url, "api_key": GEMINI_KEY},
    }
    for provider in FAKED:
        models[MODEL[provider]].update(cost=cost, price=price, **routing)
    return {"bundled_model": False, "models": models}


# ---- what reached the upstream ----------------------------------------------------------


def _walk(value: Any):
    yield value
    if isinstance(value, dict):
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v)


def _texts(value: Any) -> str:
    return " ".join(v for v in _walk(value) if isinstance(v, str))


def tool_exchange(provider: str, body: dict) -> dict:
    """The assistant's tool call and the tool result as the upstream received them:
    ``{"call_id", "call_name", "call_args", "result_id", "result_name", "result_text"}``
    (ids the provider's shape lacks are None)."""
    if provider == "openai":
        msgs = body["messages"]
        call = next(m for m in msgs if m["role"] == "assistant")["tool_calls"][0]
        result = next(m for m in msgs if m["role"] == "tool")
        return {"call_id": call["id"], "call_name": call["function"]["name"],
                "call_args": json.loads(call["function"]["arguments"]),
                "result_id": result["tool_call_id"], "result_name": None,
                "result_text": _texts(result["content"])}
    if provider == "anthropic":
        blocks = [b for m in body["messages"] if isinstance(m["content"], list)
                  for b in m["content"]]
        use = next(b for b in blocks if b["type"] == "tool_use")
        result = next(b for b in blocks if b["type"] == "tool_result")
        return {"call_id": use["id"], "call_name": use["name"], "call_args": use["input"],
                "result_id": result["tool_use_id"], "result_name": None,
                "result_text": _texts(result.get("content"))}
    if provider == "bedrock":
        blocks = [b for m in body["messages"] for b in m["content"]]
        use = next(b["toolUse"] for b in blocks if "toolUse" in b)
        result = next(b["toolResult"] for b in blocks if "toolResult" in b)
        return {"call_id": use["toolUseId"], "call_name": use["name"], "call_args": use["input"],
                "result_id": result["toolUseId"], "result_name": None,
                "result_text": _texts(result["content"])}
    if provider == "gemini":
        parts = [p for c in body["contents"] for p in c["parts"]]
        call = next(p["functionCall"] for p in parts if "functionCall" in p)
        result = next(p["functionResponse"] for p in parts if "functionResponse" in p)
        return {"call_id": call.get("id"), "call_name": call["name"], "call_args": call["args"],
                "result_id": result.get("id"), "result_name": result["name"],
                "result_text": _texts(result["response"])}
    raise AssertionError(provider)


def image(provider: str, body: dict) -> tuple[str, str]:
    """(media type, base64 data) of the one image the upstream received."""
    if provider == "openai":
        parts = [p for m in body["messages"] if isinstance(m["content"], list)
                 for p in m["content"]]
        url = next(p for p in parts if p["type"] == "image_url")["image_url"]["url"]
        head, _, data = url.partition(";base64,")
        return head.removeprefix("data:"), data
    if provider == "anthropic":
        blocks = [b for m in body["messages"] if isinstance(m["content"], list)
                  for b in m["content"]]
        source = next(b for b in blocks if b["type"] == "image")["source"]
        assert source["type"] == "base64"
        return source["media_type"], source["data"]
    if provider == "bedrock":
        img = next(b["image"] for m in body["messages"] for b in m["content"] if "image" in b)
        return f"image/{img['format']}", img["source"]["bytes"]
    if provider == "gemini":
        data = next(p["inlineData"] for c in body["contents"] for p in c["parts"]
                    if "inlineData" in p)
        return data["mimeType"], data["data"]
    raise AssertionError(provider)


def tool_names(provider: str, body: dict) -> list[str]:
    """The names of the tools declared to the upstream."""
    if provider == "openai":
        return [t["function"]["name"] for t in body["tools"]]
    if provider == "anthropic":
        return [t["name"] for t in body["tools"]]
    if provider == "bedrock":
        return [t["toolSpec"]["name"] for t in body["toolConfig"]["tools"]]
    if provider == "gemini":
        return [d["name"] for t in body["tools"] for d in t["functionDeclarations"]]
    raise AssertionError(provider)


def tool_choice_sent(provider: str, body: dict):
    """The tool choice the upstream was given, in the neutral spelling of ``spec``:
    None (its default, auto), "any", or ("tool", name)."""
    if provider == "openai":
        choice = body.get("tool_choice")
        if choice == "required":
            return "any"
        return ("tool", choice["function"]["name"]) if isinstance(choice, dict) else None
    if provider == "anthropic":
        choice = body.get("tool_choice") or {}
        if choice.get("type") == "tool":
            return ("tool", choice["name"])
        return "any" if choice.get("type") == "any" else None
    if provider == "bedrock":
        choice = (body.get("toolConfig") or {}).get("toolChoice") or {}
        if "tool" in choice:
            return ("tool", choice["tool"]["name"])
        return "any" if "any" in choice else None
    if provider == "gemini":
        config = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
        if config.get("mode") != "ANY":
            return None
        names = config.get("allowedFunctionNames")
        return ("tool", names[0]) if names and len(names) == 1 else "any"
    raise AssertionError(provider)
