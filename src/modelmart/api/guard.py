"""Authenticate, admit and settle: the marketplace around every model call.

authenticate: the key from ``Authorization: Bearer`` or ``x-api-key``, looked up in memory.
admit: the key may use the model; the model has a price; rate limits; a budget reservation
at the request's worst case. settle: the actual usage is priced, the ledger record is
journaled before the response is sent, and the reservation and token counts are corrected.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field

from modelmart.catalog import Deployment, ModelEntry
from modelmart.core.errors import (
    AuthenticationFailed, GatewayError, Overloaded, PermissionDenied,
)
from modelmart.core.money import format_usd
from modelmart.core.types import ImageBlock, Request, TextBlock, ToolResultBlock, ToolUseBlock, Usage
from modelmart.store.records import ApiKey, UsageRecord

from .http import Scope, header
from .sigv4 import verify_sigv4

log = logging.getLogger("modelmart.guard")

IMAGE_TOKENS = 800  # a rough per-image input estimate, for limits and reservations only


@dataclass(slots=True)
class Call:
    """One request's account: who, what, what was reserved, when it started."""

    rid: str
    surface: str
    key: ApiKey | None
    started: float  # epoch seconds
    t0: float  # perf_counter
    model: str = ""
    stream: bool = False
    entry: ModelEntry | None = None
    estimated_tokens: int = 0
    ticket: object | None = None
    reservation: object | None = None
    headers: dict[str, str] = field(default_factory=dict)


def estimate_input_tokens(req: Request) -> int:
    """About four characters a token: good enough to reserve, never used to bill."""
    chars = len(req.system or "")
    images = 0
    for message in req.messages:
        for block in message.content:
            if isinstance(block, TextBlock):
                chars += len(block.text)
            elif isinstance(block, ImageBlock):
                images += 1
            elif isinstance(block, ToolUseBlock):
                chars += len(block.name) + len(str(block.input))
            elif isinstance(block, ToolResultBlock):
                chars += sum(len(c.text) for c in block.content if isinstance(c, TextBlock))
    for tool in req.tools:
        chars += len(tool.name) + len(tool.description or "") + len(str(tool.input_schema))
    return math.ceil(chars / 4) + 4 * len(req.messages) + IMAGE_TOKENS * images


def secret_from(scope: Scope) -> str | None:
    value = header(scope, b"authorization")
    if value is not None:
        scheme, _, token = value.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    for name in (b"x-api-key", b"api-key"):
        value = header(scope, name)
        if value:
            return value.decode("latin-1").strip()
    return None


class Guard:
    def __init__(self, app) -> None:
        self.app = app

    # ---- before the call ------------------------------------------------------------
    def authenticate(self, scope: Scope, call: Call, body: bytes) -> ApiKey | None:
        if not self.app.settings.auth:
            return None
        authorization = header(scope, b"authorization")
        if authorization is not None and authorization.startswith(b"AWS4-HMAC-SHA256"):
            return self._authenticate_sigv4(scope, call, body)
        secret = secret_from(scope)
        if secret is None:
            raise AuthenticationFailed(
                "Missing API key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'.")
        key = self.app.keys.lookup(secret)
        if key is None:
            raise AuthenticationFailed("Invalid API key: it is unknown or has been revoked.")
        return self._accept(call, key)

    def _authenticate_sigv4(self, scope: Scope, call: Call, body: bytes) -> ApiKey:
        """boto3 signs with the key pair from ``modelmart keys create --aws``."""
        keys = self.app.keys

        def secret_for(access_key_id: str) -> str | None:
            key = keys.by_aws_access_key_id(access_key_id)
            return key.aws_secret if key is not None else None

        access_key_id = verify_sigv4(scope["method"], scope.get("raw_path") or scope["path"].encode(),
                                     scope.get("query_string", b""), scope["headers"], body,
                                     secret_for)
        return self._accept(call, keys.by_aws_access_key_id(access_key_id))

    @staticmethod
    def _accept(call: Call, key: ApiKey) -> ApiKey:
        if key.role != "user":
            raise PermissionDenied("The admin key cannot call models; create a customer key.")
        call.key = key
        return key

    async def admit(self, call: Call, req: Request) -> None:
        entry = self._entry(call, req.model, req.stream)
        call.estimated_tokens = estimate_input_tokens(req)
        await self._meter(call, entry, call.estimated_tokens,
                          req.max_tokens or entry.max_output_tokens)

    async def admit_embedding(self, call: Call, model: str, input_tokens_estimate: int) -> None:
        """``admit`` for an embeddings request: input tokens only, no output to reserve."""
        entry = self._entry(call, model, False)
        call.estimated_tokens = input_tokens_estimate
        await self._meter(call, entry, input_tokens_estimate, 0)

    def _entry(self, call: Call, model: str, stream: bool) -> ModelEntry:
        """The catalog entry, if this key may use it and it has a price."""
        entry = self.app.catalog.get(model)
        call.entry, call.model, call.stream = entry, model, stream
        key = call.key
        if key is not None and key.models is not None and model not in key.models:
            raise PermissionDenied(f"This API key may not use the model '{model}'. "
                                   f"Allowed: {', '.join(key.models)}.", param="model")
        self.app.pricing.check(entry, call.started)
        return entry

    async def _meter(self, call: Call, entry: ModelEntry, input_tokens: int,
                     max_output: int) -> None:
        """Rate limits, then a budget reservation at the request's worst case."""
        app, key = self.app, call.key
        if key is None:
            return
        try:
            call.ticket = await app.limiter.admit(
                key, app.customer_limits.get(key.customer_id), input_tokens + max_output)
            call.headers.update(call.ticket.headers)
            if key.budget_pico is None:
                return
            worst = app.pricing.worst_case(entry, input_tokens, max_output, call.started)
            try:
                call.reservation = await app.budgets.reserve(key, worst)
            except GatewayError:
                # Refused for its budget: the request must not count against its rate limits.
                await app.limiter.release(call.ticket)
                call.ticket = None
                raise
        except (ConnectionError, TimeoutError, OSError) as exc:
            # Redis or the workers' coordinator is unreachable: refuse rather than serve
            # unmetered, and say it is ours and temporary.
            log.error("limits backend unavailable: %s", exc)
            raise Overloaded("Rate limits and budgets are temporarily unavailable; retry shortly.",
                             retry_after=1) from None

    # ---- after the call -------------------------------------------------------------
    def settle(self, call: Call, *, usage: Usage | None, deployment: Deployment | None,
               attempts: int, status: str, http_status: int, error: str | None = None,
               ttft_ms: float | None = None, estimated: bool = False) -> UsageRecord | None:
        """Price the usage and journal the record (synchronously: before the response is
        sent); the counter corrections run in the background."""
        if call.entry is None:  # refused before a model was known: nothing to bill
            return None
        usage = usage or Usage()
        cost = price = 0
        if deployment is not None and (usage.total_input_tokens or usage.output_tokens):
            cost, price = self.app.pricing.quote(call.entry, deployment, usage, call.started)
        key = call.key
        record = UsageRecord(
            request_id=call.rid, created_at=call.started,
            customer_id=key.customer_id if key else None, key_id=key.id if key else None,
            model=call.model, deployment=deployment.name if deployment else None,
            provider=deployment.provider if deployment else None, surface=call.surface,
            stream=call.stream, status=status, input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens, cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens, reasoning_tokens=usage.reasoning_tokens,
            cost_pico=cost, price_pico=price,
            latency_ms=round((time.perf_counter() - call.t0) * 1000, 3), ttft_ms=ttft_ms,
            attempts=attempts, http_status=http_status, error=error,
            extra={"usage_estimated": True} if estimated else {},
        )
        self.app.recorder.record(record)
        call.headers["x-modelmart-cost"] = format_usd(price)
        ticket = call.ticket
        if key is not None and ((ticket is not None and ticket.token_counters)
                                or call.reservation is not None):
            tokens = usage.total_input_tokens + usage.output_tokens
            task = asyncio.ensure_future(self._correct(call, tokens, price))
            self.app.background.add(task)
            task.add_done_callback(self.app.background.discard)
        return record

    async def _correct(self, call: Call, tokens: int, price: int) -> None:
        try:
            if call.ticket is not None:
                await self.app.limiter.settle(call.ticket, tokens)
            await self.app.budgets.settle(call.reservation, price)
        except Exception:  # the ledger has the truth; counters heal at the next period
            log.exception("settling counters for %s failed", call.rid)
