"""A batch's requests, read and checked before anything runs: OpenAI's JSONL input file
(one ``{"custom_id", "method", "url", "body"}`` a line) and Anthropic's ``requests`` list
(``{"custom_id", "params"}``). Each request becomes ``(index, custom_id, body JSON text)``."""

from __future__ import annotations

import re
from typing import Any

import orjson

from modelmart.core.errors import InvalidRequest

# The endpoints a batch's requests may name, and the in-process path that serves them.
OPENAI_ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings", "/v1/responses")
ANTHROPIC_ENDPOINT = "/v1/messages"
MAX_OPENAI_REQUESTS = 50_000  # OpenAI's limits
MAX_ANTHROPIC_REQUESTS = 100_000  # Anthropic's
MAX_REPORTED_ERRORS = 100
_ANTHROPIC_CUSTOM_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

Requests = list[tuple[int, str, str]]


def _no_stream(body: dict) -> str | None:
    if body.get("stream"):
        return "stream is not supported in a batch: each answer is written to the results"
    return None


def openai_requests(content: bytes, endpoint: str) -> tuple[Requests, list[dict]]:
    """The requests of an input file, and the errors of its bad lines in OpenAI's
    ``{"code", "line", "message", "param"}`` shape (a batch with any is ``failed``)."""
    if endpoint not in OPENAI_ENDPOINTS:
        raise InvalidRequest(f"endpoint {endpoint!r} is not served in batches here; use one of "
                             f"{', '.join(OPENAI_ENDPOINTS)}.", param="endpoint")
    requests: Requests = []
    errors: list[dict] = []
    seen: set[str] = set()

    def bad(line: int, code: str, message: str, param: str | None = None) -> None:
        if len(errors) < MAX_REPORTED_ERRORS:
            errors.append({"code": code, "line": line, "message": message, "param": param})

    for number, raw in enumerate(content.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            item = orjson.loads(raw)
        except orjson.JSONDecodeError:
            bad(number, "invalid_json_line", "This line is not valid JSON.")
            continue
        if not isinstance(item, dict):
            bad(number, "invalid_request", "Each line must be a JSON object.")
            continue
        custom_id, url, body = item.get("custom_id"), item.get("url"), item.get("body")
        if not isinstance(custom_id, str) or not custom_id:
            bad(number, "missing_required_parameter", "custom_id must be a non-empty string.",
                "custom_id")
        elif custom_id in seen:
            bad(number, "duplicate_custom_id",
                f"The custom_id {custom_id!r} is used by an earlier line.", "custom_id")
        elif item.get("method", "POST") != "POST":
            bad(number, "invalid_method", "method must be POST.", "method")
        elif url != endpoint:
            bad(number, "mismatched_endpoint",
                f"url {url!r} is not the batch's endpoint {endpoint!r}.", "url")
        elif not isinstance(body, dict):
            bad(number, "invalid_request", "body must be a JSON object.", "body")
        elif (why := _no_stream(body)) is not None:
            bad(number, "invalid_request", why, "body.stream")
        else:
            seen.add(custom_id)
            requests.append((len(requests), custom_id, orjson.dumps(body).decode()))
    if not requests and not errors:
        bad(0, "empty_file", "The input file has no requests.")
    if len(requests) > MAX_OPENAI_REQUESTS:
        bad(0, "too_many_requests",
            f"The input file has {len(requests)} requests; a batch takes at most "
            f"{MAX_OPENAI_REQUESTS}.")
    return requests, errors


def anthropic_requests(data: Any) -> Requests:
    """The ``requests`` of a Message Batch; a 400 naming the first bad one."""
    if not isinstance(data, dict):
        raise InvalidRequest("Expected a JSON object with 'requests'.")
    items = data.get("requests")
    if not isinstance(items, list) or not items:
        raise InvalidRequest("requests: a non-empty list is required.", param="requests")
    if len(items) > MAX_ANTHROPIC_REQUESTS:
        raise InvalidRequest(f"requests: at most {MAX_ANTHROPIC_REQUESTS} in a batch.",
                             param="requests")
    requests: Requests = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = f"requests.{i}"
        if not isinstance(item, dict):
            raise InvalidRequest(f"{where}: must be an object with custom_id and params.",
                                 param=where)
        custom_id, params = item.get("custom_id"), item.get("params")
        if not isinstance(custom_id, str) or not _ANTHROPIC_CUSTOM_ID.fullmatch(custom_id):
            raise InvalidRequest(f"{where}.custom_id: 1 to 64 letters, digits, '_' or '-'.",
                                 param=f"{where}.custom_id")
        if custom_id in seen:
            raise InvalidRequest(f"{where}.custom_id: {custom_id!r} is used by an earlier "
                                 f"request; each must be unique.", param=f"{where}.custom_id")
        if not isinstance(params, dict):
            raise InvalidRequest(f"{where}.params: must be a Messages request object.",
                                 param=f"{where}.params")
        if (why := _no_stream(params)) is not None:
            raise InvalidRequest(f"{where}.params.stream: {why}.", param=f"{where}.params.stream")
        seen.add(custom_id)
        requests.append((i, custom_id, orjson.dumps(params).decode()))
    return requests
