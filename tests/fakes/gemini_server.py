"""A fake Gemini API upstream, written from Google's API reference for
``models.generateContent`` / ``models.streamGenerateContent``: ``POST
/v1beta/models/{model}:generateContent`` (JSON) and ``:streamGenerateContent`` (``?alt=sse``:
SSE chunks separated by CRLF CRLF, no end marker; without it: one JSON array), the key in
``x-goog-api-key`` (or ``?key=``), and Google's ``{"error": {code, message, status,
details}}`` bodies. It never imports modelmart.

Like Google's proto-JSON front end it refuses unknown field names, and accepts both the
camelCase and snake_case spelling of each field.

Embeddings follow ``models.embedContent`` and ``models.batchEmbedContents``: text parts in,
``{"embedding": {"values"}}`` / ``{"embeddings": [{"values"}]}`` out, at most 100 requests a
batch, each naming the same model as the path, no usage reported. Vectors are made up but
deterministic; only a full-size one is unit length (``outputDimensionality`` truncates).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import os
import random
import re
import secrets
from typing import Any

from aiohttp import web

from .script import FakeServer, Received, Reply

_FINISH = {"end_turn": "STOP", "stop_sequence": "STOP", "tool_use": "STOP",
           "max_tokens": "MAX_TOKENS", "content_filter": "SAFETY"}
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
           404: "NOT_FOUND", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED",
           500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
# Field names the REST reference documents, per message type (camelCase).
_FIELDS = {
    "request": {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig",
                "safetySettings", "cachedContent", "labels"},
    "content": {"role", "parts"},
    "part": {"text", "inlineData", "fileData", "functionCall", "functionResponse", "thought",
             "thoughtSignature", "executableCode", "codeExecutionResult", "videoMetadata",
             "partMetadata"},
    "tool": {"functionDeclarations", "googleSearch", "googleSearchRetrieval", "codeExecution",
             "urlContext", "fileSearch"},
    "functionDeclaration": {"name", "description", "parameters", "parametersJsonSchema",
                            "response", "responseJsonSchema", "behavior"},
    "generationConfig": {"stopSequences", "responseMimeType", "responseSchema",
                         "responseJsonSchema", "responseModalities", "candidateCount",
                         "maxOutputTokens", "temperature", "topP", "topK", "seed",
                         "presencePenalty", "frequencyPenalty", "responseLogprobs", "logprobs",
                         "enableEnhancedCivicAnswers", "speechConfig", "thinkingConfig",
                         "mediaResolution", "imageConfig"},
}
_PART_DATA = ("text", "inlineData", "fileData", "functionCall", "functionResponse",
              "executableCode", "codeExecutionResult")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.title() for w in rest)


def _get(obj: dict, camel: str) -> Any:
    return obj.get(camel, obj.get(re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()))


def error_body(status: int, message: str, details: list | None = None) -> dict:
    err: dict[str, Any] = {"code": status, "message": message,
                           "status": _STATUS.get(status, "INTERNAL")}
    if details:
        err["details"] = details
    return {"error": err}


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=json.dumps(body).encode(),
                        content_type="application/json")


class _Invalid(Exception):
    pass


class FakeGemini(FakeServer):
    def __init__(self, api_key: str | None = None) -> None:
        super().__init__()
        self.api_key = api_key
        # thoughtSignature values handed out, so tests can check they come back
        self.signatures: list[str] = []

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        # Registered first: aiohttp tries routes in order, and {call} would match these too.
        app.router.add_post("/v1beta/models/{model:[^/:]+}:embedContent", self._embed_one)
        app.router.add_post("/v1beta/models/{model:[^/:]+}:batchEmbedContents", self._embed_batch)
        app.router.add_post("/v1beta/models/{call}", self._call)
        return app

    # ---- request checks ---------------------------------------------------------------

    def _auth_error(self, request: web.Request) -> web.Response | None:
        if self.api_key is None:
            return None
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if not key:
            return _json(403, error_body(403, "Method doesn't allow unregistered callers "
                                              "(callers without established identity). Please "
                                              "use API Key or other form of API consumer "
                                              "identity to call this API."))
        if key != self.api_key:
            # Google answers a wrong key with 400 INVALID_ARGUMENT, not 401.
            return _json(400, error_body(400, "API key not valid. Please pass a valid API key.", [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                 "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}]))
        return None

    def _validate(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise _Invalid("Invalid JSON payload received. Expected an object.")
        _known(body, "request", "")
        contents = _get(body, "contents")
        if not contents:
            raise _Invalid("* GenerateContentRequest.contents: contents is not specified")
        for i, content in enumerate(contents):
            _known(content, "content", f"contents[{i}].")
            if content.get("role", "user") not in ("user", "model"):
                raise _Invalid("Please use a valid role: user, model.")
            if not content.get("parts"):
                raise _Invalid(f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.")
            for j, part in enumerate(content["parts"]):
                _check_part(part, f"contents[{i}].parts[{j}]")
        for i, tool in enumerate(_get(body, "tools") or ()):
            _known(tool, "tool", f"tools[{i}].")
            for j, decl in enumerate(_get(tool, "functionDeclarations") or ()):
                _known(decl, "functionDeclaration", f"tools[{i}].function_declarations[{j}].")
                if "parameters" in decl and _get(decl, "parametersJsonSchema") is not None:
                    raise _Invalid(f"* GenerateContentRequest.tools[{i}].function_declarations[{j}]: "
                                   "parameters and parameters_json_schema are mutually exclusive")
        gen = _get(body, "generationConfig")
        if gen is not None:
            _known(gen, "generationConfig", "generation_config.")

    # ---- handlers ---------------------------------------------------------------------

    async def _call(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["call"].partition(":")
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self.received.append(Received(request.path_qs, dict(request.headers), body))
        if method not in ("generateContent", "streamGenerateContent"):
            return _json(404, error_body(404, f"Method not found: {method}"))
        err = self._auth_error(request)
        if err is not None:
            return err
        try:
            self._validate(body)
        except _Invalid as exc:
            return _json(400, error_body(400, str(exc)))
        reply = self.next_reply(_last_user_text(_get(body, "contents")))
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.error_status is not None:
            return _json(reply.error_status, _error_reply(reply))
        answer = _Answer(reply, model, self.signatures)
        if method == "generateContent":
            return _json(200, answer.whole())
        if request.query.get("alt") != "sse":
            return _json(200, answer.chunks())  # a JSON array of chunks
        return await self._stream(request, answer)

    async def _stream(self, request: web.Request, answer: "_Answer") -> web.StreamResponse:
        reply = answer.reply
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
        await resp.prepare(request)
        chunks = answer.chunks()
        if reply.truncate_after is not None:
            chunks = chunks[: reply.truncate_after]
        try:
            for chunk in chunks:
                await resp.write(f"data: {json.dumps(chunk)}\r\n\r\n".encode())
                if reply.event_delay:
                    await asyncio.sleep(reply.event_delay)
            await resp.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            self.client_disconnected.set()
            raise
        return resp


    # ---- embeddings -------------------------------------------------------------------

    async def _embed_request(self, request: web.Request) -> tuple[str, Any] | web.Response:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self.received.append(Received(request.path_qs, dict(request.headers), body))
        model = request.match_info["model"]
        err = self._auth_error(request)
        if err is not None:
            return err
        if model not in EMBEDDING_MODELS:
            return _json(404, error_body(404, f"models/{model} is not found for API version "
                                              "v1beta, or is not supported for embedContent. "
                                              "Call ListModels to see the list of available "
                                              "models and their supported methods."))
        if self.replies:  # a scripted delay or failure
            reply = self.replies.pop(0)
            if reply.delay:
                await asyncio.sleep(reply.delay)
            if reply.error_status is not None:
                return _json(reply.error_status, _error_reply(reply))
        return model, body

    async def _embed_one(self, request: web.Request) -> web.Response:
        got = await self._embed_request(request)
        if isinstance(got, web.Response):
            return got
        model, body = got
        try:
            values = _embed_values(model, body, "EmbedContentRequest", f"models/{model}")
        except _Invalid as exc:
            return _json(400, error_body(400, str(exc)))
        return _json(200, {"embedding": {"values": values}})

    async def _embed_batch(self, request: web.Request) -> web.Response:
        got = await self._embed_request(request)
        if isinstance(got, web.Response):
            return got
        model, body = got
        try:
            if not isinstance(body, dict):
                raise _Invalid("Invalid JSON payload received. Expected an object.")
            for key in body:
                if _camel(key) != "requests":
                    raise _Invalid(f"Invalid JSON payload received. Unknown name \"{key}\" at "
                                   "'request': Cannot find field.")
            requests = body.get("requests")
            if not isinstance(requests, list) or not requests:
                raise _Invalid("* BatchEmbedContentsRequest.requests: requests is not specified")
            if len(requests) > EMBED_BATCH_LIMIT:
                raise _Invalid(f"* BatchEmbedContentsRequest.requests: at most "
                               f"{EMBED_BATCH_LIMIT} requests can be in one batch")
            embeddings = [{"values": _embed_values(model, r, f"requests[{i}]", None)}
                          for i, r in enumerate(requests)]
        except _Invalid as exc:
            return _json(400, error_body(400, str(exc)))
        return _json(200, {"embeddings": embeddings})


def _known(obj: Any, kind: str, where: str) -> None:
    if not isinstance(obj, dict):
        raise _Invalid(f"Invalid JSON payload received. Invalid value at '{where.rstrip('.')}'.")
    for key in obj:
        if _camel(key) not in _FIELDS[kind]:
            raise _Invalid(f"Invalid JSON payload received. Unknown name \"{key}\" at "
                           f"'{where.rstrip('.') or 'request'}': Cannot find field.")


def _check_part(part: Any, where: str) -> None:
    _known(part, "part", where + ".")
    data = [k for k in part if _camel(k) in _PART_DATA]
    if len(data) != 1:
        raise _Invalid(f"* GenerateContentRequest.{where}.data: required oneof field 'data' "
                       "must have one initialized field")


def _last_user_text(contents: list) -> str:
    for content in reversed(contents):
        if content.get("role", "user") == "user":
            return "".join(p.get("text", "") for p in content["parts"] if isinstance(p, dict))
    return ""


def _error_reply(reply: Reply) -> dict:
    details = None
    if reply.retry_after is not None:
        details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{reply.retry_after:g}s"}]
    return error_body(reply.error_status, reply.error_message, details)


class _Answer:
    """One scripted reply rendered as a GenerateContentResponse or its stream of chunks."""

    def __init__(self, reply: Reply, model: str, signatures: list[str]) -> None:
        self.reply = reply
        self.model = model
        self.id = secrets.token_urlsafe(16)
        self.signature = None
        if reply.reasoning_tokens and reply.tool_calls:
            # A thinking model signs its first function call part.
            self.signature = base64.b64encode(os.urandom(24)).decode()
            signatures.append(self.signature)

    def finish(self) -> str:
        r = self.reply
        return _FINISH[r.stop or ("tool_use" if r.tool_calls else "end_turn")]

    def usage(self, final: bool = True) -> dict:
        r = self.reply
        prompt = r.input_tokens + r.cache_read_tokens + r.cache_write_tokens
        out: dict[str, Any] = {"promptTokenCount": prompt, "totalTokenCount": prompt,
                               "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]}
        if not final:
            return out
        out["candidatesTokenCount"] = r.output_tokens - r.reasoning_tokens
        out["totalTokenCount"] = prompt + r.output_tokens
        if r.cache_read_tokens:
            out["cachedContentTokenCount"] = r.cache_read_tokens
        if r.reasoning_tokens:
            out["thoughtsTokenCount"] = r.reasoning_tokens
        return out

    def call_parts(self) -> list[dict]:
        parts = []
        for n, call in enumerate(self.reply.tool_calls):
            fc: dict[str, Any] = {"name": call.name, "args": call.arguments}
            if call.id:
                fc["id"] = call.id
            part: dict[str, Any] = {"functionCall": fc}
            if n == 0 and self.signature:
                part["thoughtSignature"] = self.signature
            parts.append(part)
        return parts

    def _response(self, parts: list[dict], finish: str | None, final_usage: bool) -> dict:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        return {"candidates": [candidate], "usageMetadata": self.usage(final_usage),
                "modelVersion": self.model, "responseId": self.id}

    def whole(self) -> dict:
        parts = ([{"text": self.reply.text}] if self.reply.text else []) + self.call_parts()
        return self._response(parts, self.finish(), True)

    def chunks(self) -> list[dict]:
        text, size = self.reply.text or "", max(1, self.reply.chunk_size)
        groups = [[{"text": text[i:i + size]}] for i in range(0, len(text), size)]
        if self.reply.tool_calls:
            groups.append(self.call_parts())  # parallel calls arrive together, whole
        groups = groups or [[{"text": ""}]]
        out = [self._response(g, None, False) for g in groups]
        out[-1] = self._response(groups[-1], self.finish(), True)
        return out


# ---- embeddings -------------------------------------------------------------------------

EMBEDDING_MODELS = {"gemini-embedding-001": 3072, "text-embedding-004": 768}
EMBED_BATCH_LIMIT = 100
_EMBED_FIELDS = {"model", "content", "taskType", "title", "outputDimensionality"}
_TASK_TYPES = {"TASK_TYPE_UNSPECIFIED", "RETRIEVAL_QUERY", "RETRIEVAL_DOCUMENT",
               "SEMANTIC_SIMILARITY", "CLASSIFICATION", "CLUSTERING", "QUESTION_ANSWERING",
               "FACT_VERIFICATION", "CODE_RETRIEVAL_QUERY"}


def _embed_values(model: str, req: Any, where: str, path_model: str | None) -> list[float]:
    """Checks one EmbedContentRequest and makes its vector."""
    if not isinstance(req, dict):
        raise _Invalid(f"Invalid JSON payload received. Invalid value at '{where}'.")
    for key in req:
        if _camel(key) not in _EMBED_FIELDS:
            raise _Invalid(f"Invalid JSON payload received. Unknown name \"{key}\" at "
                           f"'{where}': Cannot find field.")
    named = _get(req, "model")
    if path_model is None and named != f"models/{model}":
        raise _Invalid(f"* BatchEmbedContentsRequest.{where}.model: Model names should match "
                       f"models/{model}, got {named!r}")
    task = _get(req, "taskType")
    if task is not None and task not in _TASK_TYPES:
        raise _Invalid(f"Invalid value at '{where}.task_type': {task!r}")
    content = _get(req, "content")
    if not isinstance(content, dict) or not content.get("parts"):
        raise _Invalid(f"* {where}.content: contents is not specified")
    _known(content, "content", f"{where}.content.")
    texts = []
    for j, part in enumerate(content["parts"]):
        _check_part(part, f"{where}.content.parts[{j}]")
        if not isinstance(part.get("text"), str):
            raise _Invalid(f"* {where}.content.parts[{j}]: only text can be embedded")
        texts.append(part["text"])
    text = "".join(texts)
    if not text:
        raise _Invalid(f"* {where}.content: text must not be empty")
    size = EMBEDDING_MODELS[model]
    dims = _get(req, "outputDimensionality")
    if dims is not None and (not isinstance(dims, int) or not 1 <= dims <= size):
        raise _Invalid(f"* {where}.output_dimensionality: must be between 1 and {size}")
    return _fake_vector(model, text)[:dims or size]


def _fake_vector(model: str, text: str) -> list[float]:
    rng = random.Random(hashlib.sha256(f"{model}\0{text}".encode()).digest())
    values = [rng.gauss(0.0, 1.0) for _ in range(EMBEDDING_MODELS[model])]
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]
