"""A fake OpenAI Chat Completions upstream, written from OpenAI's API reference:
``POST /v1/chat/completions`` (JSON and SSE ``chat.completion.chunk`` streams, usage only with
``stream_options.include_usage``, ``data: [DONE]``), ``GET /v1/models``, bearer auth and
``{"error": {message, type, param, code}}`` error bodies. It never imports modelmart.

``POST /v1/embeddings`` follows the Embeddings reference: ``input`` a string, an array of
strings, an array of token ids or an array of such arrays; ``encoding_format`` ``float``
(arrays of numbers) or ``base64`` (little-endian float32); ``dimensions`` only for the
text-embedding-3 models. Vectors are made up but deterministic (the same text and model
give the same unit vector); a token here is a word or a punctuation mark.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import random
import re
import secrets
import string
import struct
import time
from typing import Any

from aiohttp import web

from .script import FakeServer, Received, Reply

_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}
# status -> (type, code) as api.openai.com answers them
_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("requests", "rate_limit_exceeded"),
}


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=json.dumps(body).encode(),
                        content_type="application/json", headers=headers)


def _call_id() -> str:
    return "call_" + secrets.token_urlsafe(18)[:24]


class FakeOpenAI(FakeServer):
    def __init__(self, api_key: str | None = None, *, models: tuple[str, ...] = ("gpt-4o-mini", "gpt-4o"),
                 unsupported_params: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.api_key = api_key
        self.models = models
        # Parameters this "model" refuses, as OpenAI's reasoning models refuse max_tokens.
        self.unsupported_params = unsupported_params

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/embeddings", self._embeddings)
        return app

    # ---- request checks ---------------------------------------------------------------

    def _auth_error(self, request: web.Request) -> web.Response | None:
        if self.api_key is None:
            return None
        auth = request.headers.get("Authorization", "")
        if not auth:
            return _json(401, error_body(
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                "invalid_request_error"))
        if auth != f"Bearer {self.api_key}":
            return _json(401, error_body("Incorrect API key provided.", "invalid_request_error",
                                         code="invalid_api_key"))
        return None

    def _validation_error(self, body: Any) -> web.Response | None:
        if not isinstance(body, dict):
            return _json(400, error_body("We could not parse the JSON body of your request.",
                                         "invalid_request_error"))
        if not body.get("model"):
            return _json(400, error_body("you must provide a model parameter", "invalid_request_error"))
        if "messages" not in body:
            return _json(400, error_body("Missing required parameter: 'messages'.", "invalid_request_error",
                                         "messages", "missing_required_parameter"))
        if not isinstance(body["messages"], list):
            return _json(400, error_body("Invalid type for 'messages': expected an array.",
                                         "invalid_request_error", "messages", "invalid_type"))
        if not body["messages"]:
            return _json(400, error_body(
                "Invalid 'messages': empty array. Expected an array with minimum length 1, "
                "but got an empty array instead.", "invalid_request_error", "messages", "empty_array"))
        if body.get("stream_options") is not None and not body.get("stream"):
            return _json(400, error_body(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                "invalid_request_error", "stream_options", "invalid_value"))
        for name in self.unsupported_params:
            if name in body:
                return _json(400, error_body(
                    f"Unsupported parameter: '{name}' is not supported with this model.",
                    "invalid_request_error", name, "unsupported_parameter"))
        return None

    # ---- handlers ---------------------------------------------------------------------

    async def _models(self, request: web.Request) -> web.Response:
        if (err := self._auth_error(request)) is not None:
            return err
        data = [{"id": m, "object": "model", "created": 1715367049, "owned_by": "system"}
                for m in self.models]
        return _json(200, {"object": "list", "data": data})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self.received.append(Received(request.path, dict(request.headers), body))
        err = self._auth_error(request) or self._validation_error(body)
        if err is not None:
            return err
        reply = self.next_reply(_last_user_text(body["messages"]))
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.error_status is not None:
            return _error_reply(reply)
        completion = _Completion(reply, body["model"])
        if body.get("logprobs"):
            completion.top_logprobs = int(body.get("top_logprobs") or 0)
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return await self._stream(request, completion, include_usage)
        return _json(200, completion.whole(), {"x-request-id": "req_" + secrets.token_hex(16)})

    async def _stream(self, request: web.Request, completion: "_Completion", include_usage: bool):
        reply = completion.reply
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                           "Cache-Control": "no-cache"})
        await resp.prepare(request)
        # Compact JSON, UTF-8 unescaped, as api.openai.com writes its chunks.
        frames = [json.dumps(c, separators=(",", ":"), ensure_ascii=False)
                  for c in completion.chunks(include_usage)] + ["[DONE]"]
        if reply.truncate_after is not None:
            frames = frames[: reply.truncate_after]
        try:
            for frame in frames:
                await resp.write(f"data: {frame}\n\n".encode())
                if reply.event_delay:
                    await asyncio.sleep(reply.event_delay)
            await resp.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            self.client_disconnected.set()
            raise
        return resp

    async def _embeddings(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self.received.append(Received(request.path, dict(request.headers), body))
        if (err := self._auth_error(request)) is not None:
            return err
        checked = _check_embeddings(body)
        if isinstance(checked, web.Response):
            return checked
        inputs, counts, size = checked
        if self.replies:  # a scripted delay or failure
            reply = self.replies.pop(0)
            if reply.delay:
                await asyncio.sleep(reply.delay)
            if reply.error_status is not None:
                return _error_reply(reply)
        data = []
        for i, item in enumerate(inputs):
            vector: Any = fake_vector(body["model"], item, size)
            if body.get("encoding_format") == "base64":
                vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": vector})
        tokens = sum(counts)
        return _json(200, {"object": "list", "data": data, "model": body["model"],
                           "usage": {"prompt_tokens": tokens, "total_tokens": tokens}},
                     {"x-request-id": "req_" + secrets.token_hex(16)})


def _last_user_text(messages: list) -> str:
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            content = msg.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _error_reply(reply: Reply) -> web.Response:
    type_, code = _ERROR_TYPES.get(reply.error_status, ("server_error", None))
    headers = {"x-request-id": "req_" + secrets.token_hex(16)}
    if reply.retry_after is not None:
        headers["retry-after"] = f"{reply.retry_after:g}"
        headers["retry-after-ms"] = str(int(reply.retry_after * 1000))
    return _json(reply.error_status, error_body(reply.error_message, type_, None, code), headers)


class _Completion:
    """One scripted reply rendered as a chat completion or as its stream of chunks."""

    def __init__(self, reply: Reply, model: str) -> None:
        self.reply = reply
        self.model = model
        self.id = "chatcmpl-" + secrets.token_urlsafe(21)[:29]
        self.created = int(time.time())
        self.call_ids = [c.id or _call_id() for c in reply.tool_calls]
        self.top_logprobs: int | None = None  # set when the request asked for logprobs

    @property
    def finish_reason(self) -> str:
        stop = self.reply.stop or ("tool_use" if self.reply.tool_calls else "end_turn")
        return _FINISH[stop]

    def usage(self) -> dict:
        r = self.reply
        prompt = r.input_tokens + r.cache_read_tokens + r.cache_write_tokens
        return {
            "prompt_tokens": prompt,
            "completion_tokens": r.output_tokens,
            "total_tokens": prompt + r.output_tokens,
            "prompt_tokens_details": {"cached_tokens": r.cache_read_tokens, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": r.reasoning_tokens, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0},
        }

    def _calls(self) -> list[dict]:
        return [{"id": cid, "type": "function",
                 "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)}}
                for cid, c in zip(self.call_ids, self.reply.tool_calls)]

    def whole(self) -> dict:
        message: dict[str, Any] = {"role": "assistant", "content": self.reply.text,
                                   "refusal": None, "annotations": []}
        if self.reply.tool_calls:
            message["tool_calls"] = self._calls()
        return {
            "id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "message": message, "logprobs": self.logprobs(),
                         "finish_reason": self.finish_reason}],
            "usage": self.usage(), "service_tier": "default", "system_fingerprint": "fp_fake0001",
        }

    def logprobs(self) -> dict | None:
        """OpenAI's ``{"content": [{token, logprob, bytes, top_logprobs}], "refusal"}``,
        a word a token, made-up but deterministic probabilities."""
        if self.top_logprobs is None:
            return None
        content = []
        for i, token in enumerate(re.findall(r"\s*\S+", self.reply.text or "")):
            logprob = -0.01 * (i + 1)
            alternatives = [{"token": token if k == 0 else f"{token}~{k}",
                             "logprob": logprob - k, "bytes": list(token.encode())}
                            for k in range(self.top_logprobs)]
            content.append({"token": token, "logprob": logprob, "bytes": list(token.encode()),
                            "top_logprobs": alternatives})
        return {"content": content, "refusal": None}

    def chunks(self, include_usage: bool) -> list[dict]:
        """As OpenAI streams them: with ``include_usage`` every chunk carries ``usage``
        (null but in the last, which has no choices); every chunk ends with the random
        ``obfuscation`` padding (on unless ``stream_options.include_obfuscation`` is false)."""
        out = [self._chunk(d, include_usage=include_usage) for d in self._deltas()]
        out.append(self._chunk({}, self.finish_reason, include_usage=include_usage))
        if include_usage:
            out.append(self._chunk(None, include_usage=True, usage=self.usage()))
        return out

    def _deltas(self):
        r, size = self.reply, max(1, self.reply.chunk_size)
        first: dict[str, Any] = {"role": "assistant", "content": "" if r.text else None, "refusal": None}
        calls = self._calls()
        if not r.text and calls:
            # OpenAI puts the first tool call's header in the role chunk when there is no text.
            first["tool_calls"] = [_call_header(0, calls[0])]
        yield first
        for i in range(0, len(r.text or ""), size):
            yield {"content": r.text[i:i + size]}
        for n, call in enumerate(calls):
            if n or r.text:
                yield {"tool_calls": [_call_header(n, call)]}
            args = call["function"]["arguments"]
            for i in range(0, len(args), size):
                yield {"tool_calls": [{"index": n, "function": {"arguments": args[i:i + size]}}]}

    def _chunk(self, delta: dict | None, finish: str | None = None, *, include_usage: bool,
               usage: dict | None = None) -> dict:
        """One chunk, its members in OpenAI's order; ``delta`` None: the usage chunk."""
        chunk: dict[str, Any] = {
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "service_tier": "default", "system_fingerprint": "fp_fake0001",
            "choices": [] if delta is None else [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            chunk["usage"] = usage
        # OpenAI pads chunks with random characters against length side channels.
        chunk["obfuscation"] = "".join(random.choices(_ALNUM, k=random.randint(1, 16)))
        return chunk


_ALNUM = string.ascii_letters + string.digits


def _call_header(n: int, call: dict) -> dict:
    return {"index": n, "id": call["id"], "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""}}


# ---- embeddings -------------------------------------------------------------------------

# Embedding models and their native sizes; only the text-embedding-3 ones take `dimensions`.
EMBEDDING_MODELS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072,
                    "text-embedding-ada-002": 1536}
_MAX_INPUTS = 2048
_MAX_INPUT_TOKENS = 8192
_INVALID_INPUT = ("'$.input' is invalid. Please check the API reference: "
                  "https://platform.openai.com/docs/api-reference.")


def fake_tokens(text: str) -> int:
    return len(re.findall(r"\w+|[^\w\s]", text))


def fake_vector(model: str, item: Any, size: int) -> list[float]:
    """A unit vector that depends only on the model and the input (text or token ids)."""
    seed = hashlib.sha256(f"{model}\0{json.dumps(item)}".encode()).digest()
    rng = random.Random(seed)
    values = [rng.gauss(0.0, 1.0) for _ in range(size)]
    norm = math.sqrt(sum(v * v for v in values))
    return [struct.unpack("<f", struct.pack("<f", v / norm))[0] for v in values]


def _embedding_inputs(raw: Any) -> list[Any] | None:
    """The list of inputs (strings or token-id lists), or None when ``input`` is invalid."""
    def is_tokens(x: Any) -> bool:
        return (isinstance(x, list) and bool(x)
                and all(isinstance(t, int) and not isinstance(t, bool) for t in x))

    if isinstance(raw, str):
        return [raw] if raw else None
    if is_tokens(raw):
        return [raw]
    if not isinstance(raw, list) or not raw:
        return None
    if all(isinstance(x, str) and x for x in raw) or all(is_tokens(x) for x in raw):
        return raw
    return None


def _check_embeddings(body: Any) -> web.Response | tuple[list[Any], list[int], int]:
    """OpenAI's 400/404 for a bad embeddings request, or (inputs, their token counts, the
    vector size)."""
    def invalid(message: str, param: str | None = None, code: str | None = None):
        return _json(400, error_body(message, "invalid_request_error", param, code))

    if not isinstance(body, dict):
        return invalid("We could not parse the JSON body of your request.")
    model = body.get("model")
    if not model:
        return invalid("you must provide a model parameter")
    if model not in EMBEDDING_MODELS:
        return _json(404, error_body(f"The model `{model}` does not exist or you do not have "
                                     "access to it.", "invalid_request_error", None,
                                     "model_not_found"))
    if "input" not in body:
        return invalid("Missing required parameter: 'input'.", "input", "missing_required_parameter")
    inputs = _embedding_inputs(body["input"])
    if inputs is None:
        return invalid(_INVALID_INPUT)
    if len(inputs) > _MAX_INPUTS:
        return invalid(f"Invalid 'input': maximum input length is {_MAX_INPUTS}.", "input",
                       "invalid_value")
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        return invalid(f"Invalid value for 'encoding_format': {fmt!r}. Supported values are: "
                       "'float' and 'base64'.", "encoding_format", "invalid_value")
    size = EMBEDDING_MODELS[model]
    dims = body.get("dimensions")
    if dims is not None:
        if not model.startswith("text-embedding-3"):
            return invalid("This model does not support specifying dimensions.", "dimensions")
        if not isinstance(dims, int) or isinstance(dims, bool) or not 1 <= dims <= size:
            return invalid(f"Invalid value for 'dimensions' = {dims}. Must be between 1 and "
                           f"{size}.", "dimensions", "invalid_value")
        size = dims
    counts = [len(x) if isinstance(x, list) else fake_tokens(x) for x in inputs]
    for i, n in enumerate(counts):
        if n > _MAX_INPUT_TOKENS:
            return invalid(f"This model's maximum context length is {_MAX_INPUT_TOKENS} tokens, "
                           f"however you requested {n} tokens (input[{i}]). Please reduce your "
                           "prompt.")
    return inputs, counts, size
