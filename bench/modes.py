"""What a cell sends: one mode of load, its request body and headers.

``json`` and ``stream`` run at every concurrency level and fill the main table. The other
modes are the real traffic of issue 15, run at one level (16): the stream of simplified
chunks the bench used to send (beside the real-shape ``stream``, to show what real chunks
cost), a 500-chunk stream, a 200 KB prompt, and two cross-dialect paths: an Anthropic
Messages client streaming from an OpenAI-compatible upstream, and Bedrock's
ConverseStream (boto3's request, SigV4-signed) streaming from an Anthropic upstream.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from wrk import chat_body

EXTRA_CONCURRENCY = (16,)
BIG_PROMPT_BYTES = 200 * 1024
SYSTEM = "You are a helpful assistant."
QUESTION = "Say hello in one short sentence."


@dataclass(frozen=True)
class Mode:
    name: str
    label: str
    stream: bool
    main: bool  # json and stream: every concurrency level, the main table
    expect: bytes  # a smoke reply holds this


MODES = {m.name: m for m in (
    Mode("json", "JSON", False, True, b'"Hello'),
    Mode("stream", "stream", True, True, b"[DONE]"),
    Mode("stream-simple", "stream, the simplified chunks the bench used to send", True, False,
         b"[DONE]"),
    Mode("long", "stream of 500 chunks", True, False, b"[DONE]"),
    Mode("big", "JSON, 200 KB prompt", False, False, b'"Hello'),
    Mode("anthropic", "Anthropic client, OpenAI-compatible upstream, stream", True, False,
         b"message_stop"),
    Mode("bedrock", "Bedrock ConverseStream (SigV4), Anthropic upstream", True, False,
         b"messageStop"),
)}
DEFAULT_MODES = ",".join(MODES)


def big_prompt(size: int = BIG_PROMPT_BYTES) -> str:
    """Plain English-like text of ``size`` bytes (a document pasted into a prompt)."""
    words = ("the keeper of the light wrote in his log that the storm came in from the "
             "west before dawn and the sea rose over the rocks ").split()
    out, n, i = [], 0, 0
    while n < size:
        word = words[i % len(words)]
        out.append(word)
        n += len(word) + 1
        i += 1
    return " ".join(out)[:size]


def request(mode: str, path: str, model: str, key: str | None, aws: tuple[str, str] | None,
            host: str, headers: dict[str, str]) -> tuple[str, str, dict[str, str]]:
    """(path, body, headers) of ``mode``'s request to a target; ``headers`` are the
    target's own (its bearer key); ``key``/``aws``: its secrets for other dialects."""
    if mode in ("json", "stream", "stream-simple", "long"):
        return path, chat_body(model, MODES[mode].stream), headers
    if mode == "big":
        body = {"model": model, "max_tokens": 16, "stream": False,
                "messages": [{"role": "system", "content": SYSTEM},
                             {"role": "user", "content": big_prompt() + "\n\n" + QUESTION}]}
        return path, json.dumps(body, separators=(",", ":")), headers
    if mode == "anthropic":
        body = {"model": model, "max_tokens": 16, "stream": True, "system": SYSTEM,
                "messages": [{"role": "user", "content": QUESTION}]}
        return path, json.dumps(body, separators=(",", ":")), {
            "x-api-key": key or "", "anthropic-version": "2023-06-01"}
    if mode == "bedrock":
        body = json.dumps({"messages": [{"role": "user", "content": [{"text": QUESTION}]}],
                           "system": [{"text": SYSTEM}], "inferenceConfig": {"maxTokens": 16}},
                          separators=(",", ":"))
        return path, body, sigv4_headers(path, body, host, aws)
    raise ValueError(f"unknown mode {mode!r}")


def sigv4_headers(path: str, body: str, host: str, aws: tuple[str, str] | None) -> dict[str, str]:
    """The headers boto3's bedrock-runtime client would send, signed now by botocore; the
    gateway accepts a signature for 15 minutes, longer than a cell."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    if aws is None:
        raise ValueError("the bedrock mode needs the target's AWS-style key")
    req = AWSRequest("POST", f"http://{host}{path}", data=body.encode(),
                     headers={"content-type": "application/json", "host": host})
    SigV4Auth(Credentials(*aws), "bedrock", "us-east-1").add_auth(req)
    return {k: v for k, v in req.headers.items() if k.lower() not in ("content-type", "host")}
