"""A fake Amazon Bedrock Runtime Converse API, written from the AWS API reference and the
botocore service model (``bedrock-runtime`` 2023-09-30): ``POST /model/{modelId}/converse``
answers JSON, ``/converse-stream`` answers ``application/vnd.amazon.eventstream`` binary
frames (written here with a small framer of its own), errors are ``{"message"}`` bodies
typed by the ``x-amzn-errortype`` header. ``POST /model/{modelId}/invoke`` serves the
embeddings models (Titan, Nova, Cohere: ``bedrock_embeddings.py``); Converse refuses them,
as Bedrock does. Requests must carry a SigV4 ``Authorization``
header (or a Bedrock API key as a Bearer token); given credentials, the fake recomputes the
signature with botocore's signer. Does not import modelmart.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import re
import struct
import uuid
from datetime import datetime, timezone
from urllib.parse import unquote

from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from . import bedrock_embeddings
from .script import FakeServer, Received, Reply

ERROR_TYPES = {
    400: "ValidationException", 401: "UnrecognizedClientException",
    403: "AccessDeniedException", 404: "ResourceNotFoundException",
    408: "ModelTimeoutException", 424: "ModelErrorException", 429: "ThrottlingException",
    500: "InternalServerException", 503: "ServiceUnavailableException",
}
_PATH = re.compile(r"^/model/([^/]+)/(converse|converse-stream|invoke)$")
_COUNT_PATH = re.compile(r"^/model/([^/]+)/count-tokens$")


def fake_count(converse: dict) -> int:
    """The fake's tokenizer: words and punctuation marks of the prompt's JSON, plus 5."""
    prompt = json.dumps([converse.get("system"), converse["messages"],
                         converse.get("toolConfig")])
    return len(re.findall(r"\w+|[^\w\s]", prompt)) + 5
_BODY_FIELDS = {"messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig",
                "additionalModelRequestFields", "promptVariables", "requestMetadata",
                "additionalModelResponseFieldPaths", "performanceConfig", "serviceTier",
                "outputConfig"}


def _request_id() -> str:
    return str(uuid.uuid4())


def error_response(status: int, message: str, retry_after: float | None = None,
                   kind: str | None = None) -> web.Response:
    kind = kind or ERROR_TYPES.get(status, "InternalServerException" if status >= 500
                                   else "ValidationException")
    # AWS appends the coral namespace to the type; botocore cuts it at the ':'.
    headers = {"x-amzn-errortype": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/",
               "x-amzn-requestid": _request_id()}
    if retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
    return web.json_response({"message": message}, status=status, headers=headers)


# ---- event-stream framing ---------------------------------------------------------------


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return (bytes([len(raw_name)]) + raw_name + b"\x07" + struct.pack(">H", len(raw_value))
            + raw_value)


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude with its CRC, headers, payload, message CRC."""
    head = b"".join(_header(k, v) for k, v in headers.items())
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", binascii.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + head + payload
    return message + struct.pack(">I", binascii.crc32(message) & 0xFFFFFFFF)


def event_frame(event_type: str, data: dict) -> bytes:
    # Bedrock pads every event with a "p" field so sizes do not leak the text.
    payload = json.dumps({**data, "p": "abcdefghijklmnopqrstuvwxyzABCDEFGH"[:len(event_type)]})
    return frame({":event-type": event_type, ":content-type": "application/json",
                  ":message-type": "event"}, payload.encode())


def exception_frame(exception_type: str, message: str) -> bytes:
    return frame({":exception-type": exception_type, ":content-type": "application/json",
                  ":message-type": "exception"}, json.dumps({"message": message}).encode())


# ---- replies ----------------------------------------------------------------------------


def last_user_text(messages: list) -> str:
    for msg in reversed(messages):
        if msg.get("role") == "user":
            return "".join(b.get("text", "") for b in msg["content"] if isinstance(b, dict))
    return ""


def stop_reason(reply: Reply) -> str:
    return reply.stop or ("tool_use" if reply.tool_calls else "end_turn")


def usage(reply: Reply) -> dict:
    out = {"inputTokens": reply.input_tokens, "outputTokens": reply.output_tokens,
           "totalTokens": reply.input_tokens + reply.output_tokens + reply.cache_read_tokens
           + reply.cache_write_tokens}
    if reply.cache_read_tokens or reply.cache_write_tokens:
        out["cacheReadInputTokens"] = reply.cache_read_tokens
        out["cacheWriteInputTokens"] = reply.cache_write_tokens
    return out


def content_blocks(reply: Reply) -> list[dict]:
    blocks = [{"text": reply.text}] if reply.text is not None else []
    for call in reply.tool_calls:
        blocks.append({"toolUse": {"toolUseId": call.id or f"tooluse_{uuid.uuid4().hex[:22]}",
                                   "name": call.name, "input": call.arguments}})
    return blocks


def _response_fields(reply: Reply, body: dict) -> dict:
    # The stop sequence is only reported when the caller asked for it by path.
    if reply.stop_sequence and "/stop_sequence" in body.get("additionalModelResponseFieldPaths",
                                                            []):
        return {"additionalModelResponseFields": {"stop_sequence": reply.stop_sequence}}
    return {}


def converse_body(reply: Reply, body: dict) -> dict:
    return {"output": {"message": {"role": "assistant", "content": content_blocks(reply)}},
            "stopReason": stop_reason(reply), "usage": usage(reply),
            "metrics": {"latencyMs": 123}, **_response_fields(reply, body)}


def _pieces(text: str, size: int) -> list[str]:
    size = max(1, size)
    return [text[i:i + size] for i in range(0, len(text), size)]


def stream_events(reply: Reply, body: dict) -> list[tuple[str, dict]]:
    events = [("messageStart", {"role": "assistant"})]
    for index, block in enumerate(content_blocks(reply)):
        if "text" in block:
            deltas = [{"text": p} for p in _pieces(block["text"], reply.chunk_size)]
        else:
            use = block["toolUse"]
            events.append(("contentBlockStart", {"contentBlockIndex": index, "start": {
                "toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}}))
            deltas = [{"toolUse": {"input": p}}
                      for p in _pieces(json.dumps(use["input"]), reply.chunk_size)]
        events += [("contentBlockDelta", {"contentBlockIndex": index, "delta": d})
                   for d in deltas]
        events.append(("contentBlockStop", {"contentBlockIndex": index}))
    events.append(("messageStop", {"stopReason": stop_reason(reply),
                                   **_response_fields(reply, body)}))
    events.append(("metadata", {"usage": usage(reply), "metrics": {"latencyMs": 321}}))
    return events


def validate(body) -> str | None:
    """The first thing the real API would reject with a ValidationException."""
    if not isinstance(body, dict):
        return "Malformed input request, please reformat your input and try again."
    extra = sorted(set(body) - _BODY_FIELDS)
    if extra:
        return f"Malformed input request: extraneous key [{extra[0]}] is not permitted"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "A conversation must start with a user message. Try again with a " \
               "conversation that starts with a user message."
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
            return f"Value at 'messages.{i + 1}.member.role' failed to satisfy constraint"
        if not msg.get("content"):
            return f"The content field in the Message object at messages.{i}.content is empty."
        if i and messages[i - 1].get("role") == msg["role"]:
            return "A conversation must alternate between user and assistant roles."
    temperature = (body.get("inferenceConfig") or {}).get("temperature")
    if temperature is not None and not 0 <= temperature <= 1:
        return "Value at 'inferenceConfig.temperature' failed to satisfy constraint: " \
               "Member must have value less than or equal to 1"
    return None


class FakeBedrock(FakeServer):
    def __init__(self, access_key: str | None = None, secret_key: str | None = None,
                 region: str = "us-east-1", api_key: str | None = None) -> None:
        super().__init__()
        self.access_key, self.secret_key, self.region = access_key, secret_key, region
        self.api_key = api_key
        # Streaming faults beyond Reply.truncate_after: after the cut, send this many
        # bytes of the next frame, or an exception message (type, text).
        self.partial_frame_bytes = 0
        self.stream_exception: tuple[str, str] | None = None
        # InvokeModel (embeddings): a delay before each answer, and how many were being
        # answered at once, at most.
        self.invoke_delay = 0.0
        self.invoking = self.peak_invoking = 0

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        # One catch-all route: the model id is read from the raw path, where an ARN's '/'
        # is still %2F.
        app.router.add_post("/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if _COUNT_PATH.match(request.raw_path.split("?")[0]):
            return await self.count_tokens(request)
        match = _PATH.match(request.raw_path.split("?")[0])
        if match is None:
            return error_response(404, "Not Found", kind="UnknownOperationException")
        raw = await request.read()
        refusal = self.check_auth(request, raw)
        if refusal is not None:
            return refusal
        try:
            body = json.loads(raw)
        except ValueError:
            return error_response(400, "Malformed input request, please reformat your input "
                                  "and try again.")
        model_id, action = unquote(match.group(1)), match.group(2)
        self.received.append(Received(request.raw_path, dict(request.headers),
                                      {"modelId": model_id, **body}))
        if action == "invoke" or bedrock_embeddings.family(model_id):
            return await self._invoke(model_id, action, body)
        problem = validate(body)
        if problem:
            return error_response(400, problem)
        reply = self.next_reply(last_user_text(body["messages"]))
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.error_status is not None:
            return error_response(reply.error_status, reply.error_message, reply.retry_after)
        if action == "converse-stream":
            return await self._stream(request, reply, body)
        return web.json_response(converse_body(reply, body),
                                 headers={"x-amzn-requestid": _request_id()})

    async def count_tokens(self, request: web.Request) -> web.Response:
        """``CountTokens``: ``{"input": {"converse": {messages, system, toolConfig,
        additionalModelRequestFields}}}`` (or ``invokeModel``) in, ``{"inputTokens"}`` out."""
        raw = await request.read()
        refusal = self.check_auth(request, raw)
        if refusal is not None:
            return refusal
        body = json.loads(raw)
        self.received.append(Received(request.raw_path, dict(request.headers), body))
        converse = (body.get("input") or {}).get("converse")
        if not isinstance(converse, dict) or not converse.get("messages"):
            return error_response(400, "1 validation error detected: Value at "
                                  "'input.converse.messages' failed to satisfy constraint: "
                                  "Member must not be null")
        unknown = set(converse) - {"messages", "system", "toolConfig",
                                   "additionalModelRequestFields"}
        if unknown:
            return error_response(400, f"Unknown parameter in input.converse: {sorted(unknown)}")
        return web.json_response({"inputTokens": fake_count(converse)},
                                 headers={"x-amzn-requestid": _request_id()})

    async def _invoke(self, model_id: str, action: str, body) -> web.Response:
        if bedrock_embeddings.family(model_id) is None or action != "invoke":
            return error_response(400, "This action doesn't support the model that you "
                                  "provided. Try again with a supported text or chat model.")
        reply = self.replies.pop(0) if self.replies else None
        self.invoking += 1
        self.peak_invoking = max(self.peak_invoking, self.invoking)
        try:
            await asyncio.sleep(self.invoke_delay)
        finally:
            self.invoking -= 1
        if reply is not None and reply.error_status is not None:
            return error_response(reply.error_status, reply.error_message, reply.retry_after)
        try:
            data, tokens = bedrock_embeddings.answer(model_id, body)
        except bedrock_embeddings.Refusal as refusal:
            return error_response(400, str(refusal))
        return web.json_response(data, headers={
            "x-amzn-requestid": _request_id(), "x-amzn-bedrock-input-token-count": str(tokens),
            "x-amzn-bedrock-output-token-count": "0", "x-amzn-bedrock-invocation-latency": "12"})

    # ---- auth -------------------------------------------------------------------------

    def check_auth(self, request: web.Request, body: bytes) -> web.Response | None:
        auth = request.headers.get("authorization", "")
        if auth.startswith("Bearer "):
            if self.api_key is not None and auth[7:] == self.api_key:
                return None
            return error_response(403, "Invalid API Key format: Must start with pre-defined "
                                  "prefix", kind="UnrecognizedClientException")
        if not auth.startswith("AWS4-HMAC-SHA256 Credential="):
            return error_response(403, "Missing Authentication Token",
                                  kind="MissingAuthenticationTokenException")
        if self.secret_key is None:
            return None
        fields = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
        akid, date, region, service, _ = fields["Credential"].split("/")
        if akid != self.access_key:
            return error_response(403, "The security token included in the request is "
                                  "invalid.", kind="UnrecognizedClientException")
        if (region, service) != (self.region, "bedrock"):
            return error_response(403, f"Credential should be scoped to a valid region and "
                                  f"service 'bedrock', not {region}/{service}.",
                                  kind="InvalidSignatureException")
        stamp = request.headers.get("x-amz-date", "")
        try:
            sent = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
        except ValueError:
            sent = None
        if sent is None or not stamp.startswith(date) or abs(
                (datetime.now(timezone.utc) - sent).total_seconds()) > 900:
            return error_response(403, f"Signature expired or not yet current: {stamp!r}",
                                  kind="InvalidSignatureException")
        expected = self.signature(request, body, fields["SignedHeaders"].split(";"), stamp)
        if expected != fields["Signature"]:
            return error_response(403, "The request signature we calculated does not match "
                                  "the signature you provided. Check your AWS Secret Access "
                                  "Key and signing method.", kind="InvalidSignatureException")
        return None

    def signature(self, request: web.Request, body: bytes, signed: list[str],
                  timestamp: str) -> str:
        """The signature botocore computes for the request as received."""
        headers = {name: request.headers.get(name, "") for name in signed}
        url = f"http://{request.headers['host']}{request.raw_path}"
        aws = AWSRequest(method=request.method, url=url, data=body, headers=headers)
        aws.context["timestamp"] = timestamp
        signer = SigV4Auth(Credentials(self.access_key, self.secret_key), "bedrock",
                           self.region)
        string_to_sign = signer.string_to_sign(aws, signer.canonical_request(aws))
        return signer.signature(string_to_sign, aws)

    # ---- streaming --------------------------------------------------------------------

    async def _stream(self, request: web.Request, reply: Reply, body: dict):
        resp = web.StreamResponse(headers={
            "content-type": "application/vnd.amazon.eventstream",
            "x-amzn-requestid": _request_id()})
        await resp.prepare(request)
        frames = [event_frame(name, data) for name, data in stream_events(reply, body)]
        tail = b""
        if reply.truncate_after is not None:
            rest = frames[reply.truncate_after:]
            frames = frames[:reply.truncate_after]
            if self.stream_exception is not None:
                tail = exception_frame(*self.stream_exception)
            elif self.partial_frame_bytes and rest:
                tail = rest[0][:self.partial_frame_bytes]
        try:
            for data in frames + ([tail] if tail else []):
                if reply.event_delay:
                    await asyncio.sleep(reply.event_delay)
                await resp.write(data)
            await resp.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            self.client_disconnected.set()
            raise
        return resp
