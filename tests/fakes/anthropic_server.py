"""A fake Anthropic Messages API (``POST /v1/messages``), written from Anthropic's API
documentation: JSON messages, the named SSE event stream, error bodies
``{"type": "error", "error": {"type", "message"}}``. Does not import modelmart."""

from __future__ import annotations

import asyncio
import json
import re
import uuid

from aiohttp import web

from .script import FakeServer, Received, Reply

ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
    403: "permission_error", 404: "not_found_error", 413: "request_too_large",
    429: "rate_limit_error", 500: "api_error", 504: "timeout_error", 529: "overloaded_error",
}


def _id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


COUNT_FIELDS = {"model", "messages", "system", "tools", "tool_choice", "thinking",
                "mcp_servers"}


def fake_count(body: dict) -> int:
    """The fake's tokenizer: words and punctuation marks of the prompt's JSON, plus 3."""
    prompt = json.dumps([body.get("system"), body.get("messages"), body.get("tools")])
    return len(re.findall(r"\w+|[^\w\s]", prompt)) + 3


def error_response(status: int, message: str, retry_after: float | None = None) -> web.Response:
    kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    headers = {"request-id": _id("req_")}
    if retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
    body = {"type": "error", "error": {"type": kind, "message": message},
            "request_id": headers["request-id"]}
    return web.json_response(body, status=status, headers=headers)


def last_user_text(messages: list) -> str:
    for msg in reversed(messages):
        if msg.get("role") != "user":
            continue
        content = msg.get("content")
        if isinstance(content, str):
            return content
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return ""


def validate(body) -> str | None:
    """The first thing the real API would reject with a 400, cheaply checked."""
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    if not isinstance(body.get("model"), str):
        return "model: Field required"
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        return "max_tokens: Field required"
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return "max_tokens: Input should be greater than or equal to 1"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        if "content" not in msg:
            return f"messages.{i}.content: Field required"
    temperature = body.get("temperature")
    if temperature is not None and not 0 <= temperature <= 1:
        return "temperature: Input should be less than or equal to 1"
    return None


def stop_reason(reply: Reply) -> str:
    return reply.stop or ("tool_use" if reply.tool_calls else "end_turn")


def usage(reply: Reply, output_tokens: int) -> dict:
    out = {"input_tokens": reply.input_tokens, "output_tokens": output_tokens,
           "cache_creation_input_tokens": reply.cache_write_tokens,
           "cache_read_input_tokens": reply.cache_read_tokens}
    if reply.reasoning_tokens:
        out["output_tokens_details"] = {"thinking_tokens": reply.reasoning_tokens}
    return out


def content_blocks(reply: Reply) -> list[dict]:
    blocks = [{"type": "text", "text": reply.text}] if reply.text is not None else []
    for call in reply.tool_calls:
        blocks.append({"type": "tool_use", "id": call.id or _id("toolu_"), "name": call.name,
                       "input": call.arguments})
    return blocks


def message(reply: Reply, model: str) -> dict:
    return {"id": _id("msg_"), "type": "message", "role": "assistant", "model": model,
            "content": content_blocks(reply), "stop_reason": stop_reason(reply),
            "stop_sequence": reply.stop_sequence,
            "usage": usage(reply, reply.output_tokens)}


def _pieces(text: str, size: int) -> list[str]:
    size = max(1, size)
    return [text[i:i + size] for i in range(0, len(text), size)]


def stream_events(reply: Reply, model: str) -> list[tuple[str, dict]]:
    """The documented event flow for one message, as (event name, data) pairs."""
    start = message(reply, model)
    start.update(content=[], stop_reason=None, stop_sequence=None, usage=usage(reply, 1))
    events = [("message_start", {"message": start}), ("ping", {})]
    for index, block in enumerate(content_blocks(reply)):
        events += _block_events(index, block, reply.chunk_size)
    delta = {"stop_reason": stop_reason(reply), "stop_sequence": reply.stop_sequence}
    # As documented, message_delta restates only the cumulative output token count.
    events.append(("message_delta", {"delta": delta,
                                     "usage": {"output_tokens": reply.output_tokens}}))
    events.append(("message_stop", {}))
    return [(name, {"type": name, **data}) for name, data in events]


def _block_events(index: int, block: dict, size: int) -> list[tuple[str, dict]]:
    if block["type"] == "text":
        start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in _pieces(block["text"], size)]
    else:
        start = {**block, "input": {}}
        # The API opens every tool input with an empty partial_json.
        parts = [""] + _pieces(json.dumps(block["input"]), size)
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in parts]
    events = [("content_block_start", {"index": index, "content_block": start})]
    events += [("content_block_delta", {"index": index, "delta": d}) for d in deltas]
    return events + [("content_block_stop", {"index": index})]


class FakeAnthropic(FakeServer):
    def __init__(self, api_key: str | None = None) -> None:
        super().__init__()
        self.api_key = api_key

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/messages/count_tokens", self.count_tokens)
        return app

    async def count_tokens(self, request: web.Request) -> web.Response:
        """``POST /v1/messages/count_tokens``: the prompt's fields only (model, messages,
        system, tools, tool_choice, thinking); answers ``{"input_tokens": N}``."""
        if self.api_key is not None and request.headers.get("x-api-key") != self.api_key:
            return error_response(401, "invalid x-api-key")
        try:
            body = json.loads(await request.read())
        except ValueError:
            return error_response(400, "There was an issue with your request body: not JSON")
        self.received.append(Received(request.path, dict(request.headers), body))
        for name in body:
            if name not in COUNT_FIELDS:
                return error_response(400, f"{name}: Extra inputs are not permitted")
        if not body.get("model") or not body.get("messages"):
            return error_response(400, "model and messages: Field required")
        return web.json_response({"input_tokens": fake_count(body)})

    async def messages(self, request: web.Request) -> web.StreamResponse:
        if "anthropic-version" not in request.headers:
            return error_response(400, "anthropic-version: header is required")
        if self.api_key is not None and request.headers.get("x-api-key") != self.api_key:
            return error_response(401, "invalid x-api-key")
        try:
            body = json.loads(await request.read())
        except ValueError:
            return error_response(400, "There was an issue with your request body: not JSON")
        self.received.append(Received(request.path, dict(request.headers), body))
        problem = validate(body)
        if problem:
            return error_response(400, problem)
        reply = self.next_reply(last_user_text(body["messages"]))
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.error_status is not None:
            return error_response(reply.error_status, reply.error_message, reply.retry_after)
        if body.get("stream"):
            return await self._stream(request, reply, body["model"])
        return web.json_response(message(reply, body["model"]),
                                 headers={"request-id": _id("req_")})

    async def _stream(self, request: web.Request, reply: Reply, model: str):
        resp = web.StreamResponse(headers={"content-type": "text/event-stream; charset=utf-8",
                                           "cache-control": "no-cache",
                                           "request-id": _id("req_")})
        await resp.prepare(request)
        events = stream_events(reply, model)
        if reply.truncate_after is not None:
            events = events[:reply.truncate_after]
        try:
            for name, data in events:
                if reply.event_delay:
                    await asyncio.sleep(reply.event_delay)
                frame = f"event: {name}\ndata: {json.dumps(data)}\n\n"
                await resp.write(frame.encode())
            await resp.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            self.client_disconnected.set()
            raise
        return resp
