"""One owner for a call's money: authenticate, admit, settle — exactly once.

``Admission`` is the app's gate; ``admission.call(surface, scope)`` opens a ``Call``, an
async context manager that every surface runs its request inside:

- ``authenticate(scope)``: from the headers alone, before any body is read (a request
  without a valid key is answered, and its connection closed, without receiving its body).
  A SigV4 request's key must exist by then; its signature covers the body, so
  ``verify_body`` finishes the check once the body is read.
- ``admit(req)``: the key may use the model, the model has a price, rate limits, and a
  budget reservation at the request's worst case: an upper bound of its input tokens
  (``metering/bounds.py``) plus its output cap. The cap is written into the request
  (``req.max_tokens``), so the upstream is told the limit the reservation assumed.
- ``settle(...)``: prices the usage and journals one ledger record (synchronously, before
  the response is sent), then corrects the rate-limit ticket and the reservation in the
  background. A second call does nothing.
- Leaving the ``async with`` unsettled — an exception of any kind, a cancellation, a
  forgotten path — settles it there: an admitted request always ends with one ledger row,
  its reservation released and its ticket corrected.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from modelmart.catalog import Deployment, ModelEntry
from modelmart.core.errors import (
    AuthenticationFailed, GatewayError, Overloaded, PermissionDenied,
)
from modelmart.core.ids import new_id
from modelmart.core.money import format_usd
from modelmart.core.types import Request, Usage
from modelmart.dialects._checks import shown
from modelmart.metering.bounds import input_token_bound, input_token_estimate
from modelmart.store.errors import StoreError
from modelmart.store.records import ApiKey, UsageRecord

from . import passthrough
from .http import Scope, header
from .logs import REQUEST_ID
from .sigv4 import claimed_access_key_id, verify_sigv4

if TYPE_CHECKING:
    from .app import App

log = logging.getLogger("modelmart.admission")

_SIGV4 = b"AWS4-HMAC-SHA256"
# A request of a batch, run in process by ``api/batch_runner.py``: the scope carries a
# ``BatchRequest`` instead of credentials (the batch's key was checked when it was made).
# Only code in this process builds scopes, so no client can set it.
BATCH_SCOPE = "modelmart.batch"


@dataclass(slots=True, frozen=True)
class BatchRequest:
    batch_id: str
    request_id: str  # the ledger's id for this run of the request
    key: ApiKey | None  # None only with MODELMART_AUTH=off


def secret_from(scope: Scope) -> str | None:
    value = header(scope, b"authorization")
    if value is not None:
        scheme, _, token = value.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    for name in (b"x-api-key", b"api-key", b"x-goog-api-key"):
        value = header(scope, name)
        if value:
            return value.decode("latin-1").strip()
    return None


@dataclass(slots=True)
class Call:
    """One request's account: who, what, what was reserved, when it started, and whether
    it has been settled."""

    admission: "Admission"
    rid: str
    surface: str
    started: float  # epoch seconds
    t0: float  # perf_counter
    key: ApiKey | None = None
    model: str = ""
    stream: bool = False
    entry: ModelEntry | None = None
    estimated_tokens: int = 0  # the input estimate, billed when a stream reports nothing
    reserved_tokens: int = 0  # the input bound that was reserved
    ticket: object | None = None
    reservation: object | None = None
    headers: dict[str, str] = field(default_factory=dict)
    sigv4: bool = False  # authenticated by SigV4: ``verify_body`` must still run
    batch_id: str | None = None  # a request of this batch: priced at the batch rate
    admitted: bool = False
    settled: bool = False
    record: UsageRecord | None = None
    _log_token: object = None

    async def __aenter__(self) -> "Call":
        self._log_token = REQUEST_ID.set(self.rid)
        return self

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        try:
            self._settle_on_exit(exc_type, exc)
        finally:
            REQUEST_ID.reset(self._log_token)
        return False

    def _settle_on_exit(self, exc_type, exc) -> None:
        if not self.settled:
            if exc_type is None:
                log.error("request %s ended without settling; settled as an error", self.rid)
                self.settle(status="error", http_status=500, error="ended without an outcome")
            elif issubclass(exc_type, asyncio.CancelledError):
                self.settle(status="client_disconnected", http_status=499)
            elif issubclass(exc_type, GatewayError):
                self.fail(exc)
            else:
                self.settle(status="error", http_status=500, error="internal error")

    # ---- before the call ------------------------------------------------------------
    def authenticate(self, scope: Scope) -> None:
        batch = scope.get(BATCH_SCOPE)
        if batch is not None:
            self.rid, self.key, self.batch_id = batch.request_id, batch.key, batch.batch_id
            REQUEST_ID.set(self.rid)
            return
        self.admission.authenticate(self, scope)

    def verify_body(self, scope: Scope, body: bytes) -> None:
        if self.sigv4:
            self.admission.verify_sigv4(self, scope, body)

    async def admit(self, req: Request) -> None:
        entry = self.admission.entry_for(self, req.model, req.stream)
        passthrough.check(req, entry, self.headers)
        if req.max_tokens is None:
            req.max_tokens = entry.max_output_tokens
        self.estimated_tokens = input_token_estimate(req)
        self.reserved_tokens = input_token_bound(req)
        await self.admission.meter(self, entry, self.reserved_tokens, req.max_tokens)
        self.admitted = True

    async def admit_embedding(self, model: str, input_tokens_bound: int) -> None:
        """``admit`` for an embeddings request: input tokens only, no output to reserve."""
        entry = self.admission.entry_for(self, model, False)
        self.estimated_tokens = self.reserved_tokens = input_tokens_bound
        await self.admission.meter(self, entry, input_tokens_bound, 0)
        self.admitted = True

    # ---- after the call -------------------------------------------------------------
    def fail(self, err: GatewayError, attempts: int | None = None) -> None:
        """Settle with an error: ``refused`` before admission, ``error`` after it."""
        if attempts is None:
            attempts = getattr(err, "attempts", 1 if self.admitted else 0)
        self.settle(attempts=attempts, status="error" if self.admitted else "refused",
                    http_status=err.status, error=err.message)

    def settle(self, *, usage: Usage | None = None, deployment: Deployment | None = None,
               attempts: int = 0, status: str, http_status: int, error: str | None = None,
               ttft_ms: float | None = None, estimated: bool = False) -> UsageRecord | None:
        """Price the usage and journal the record, once; later calls return the first
        record and change nothing."""
        if self.settled:
            return self.record
        self.settled = True
        self.record = self.admission.settle(
            self, usage=usage, deployment=deployment, attempts=attempts, status=status,
            http_status=http_status, error=error, ttft_ms=ttft_ms, estimated=estimated)
        return self.record


class Admission:
    """The app-wide half: keys, limits, budgets, prices and the ledger."""

    def __init__(self, app: "App") -> None:
        self.app = app

    def call(self, surface: str) -> Call:
        return Call(self, rid=new_id(), surface=surface, started=time.time(),
                    t0=time.perf_counter())

    # ---- authentication ---------------------------------------------------------------
    def authenticate(self, call: Call, scope: Scope) -> None:
        """From the headers only. A SigV4 request's key must exist; its signature is
        checked by ``verify_sigv4`` once the body is in."""
        if not self.app.settings.auth:
            return
        authorization = header(scope, b"authorization")
        if authorization is not None and authorization.startswith(_SIGV4):
            akid = claimed_access_key_id(scope["headers"])
            if self.app.keys.by_aws_access_key_id(akid) is None:
                raise AuthenticationFailed(
                    "The security token included in the request is invalid.",
                    headers={"x-amzn-errortype": "UnrecognizedClientException"})
            call.sigv4 = True
            return
        call.key = self._accept(self.key_for(scope))

    def key_for(self, scope: Scope) -> ApiKey:
        """The key a request's headers carry (bearer-style), or an ``AuthenticationFailed``."""
        secret = secret_from(scope)
        if secret is None:
            raise AuthenticationFailed(
                "Missing API key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'.")
        key = self.app.keys.lookup(secret)
        if key is None:
            raise AuthenticationFailed("Invalid API key: it is unknown or has been revoked.")
        return key

    def verify_sigv4(self, call: Call, scope: Scope, body: bytes) -> None:
        """boto3 signs with the key pair from ``modelmart keys create --aws``."""
        keys = self.app.keys

        def secret_for(access_key_id: str) -> str | None:
            key = keys.by_aws_access_key_id(access_key_id)
            return key.aws_secret if key is not None else None

        access_key_id = verify_sigv4(scope["method"], scope.get("raw_path") or scope["path"].encode(),
                                     scope.get("query_string", b""), scope["headers"], body,
                                     secret_for)
        call.key = self._accept(keys.by_aws_access_key_id(access_key_id))
        call.sigv4 = False

    @staticmethod
    def _accept(key: ApiKey | None) -> ApiKey:
        if key is None:  # revoked between the two SigV4 checks
            raise AuthenticationFailed("Invalid API key: it is unknown or has been revoked.")
        if key.role != "user":
            raise PermissionDenied("The admin key cannot call models; create a customer key.")
        return key

    # ---- admission --------------------------------------------------------------------
    def entry_for(self, call: Call, model: str, stream: bool) -> ModelEntry:
        """The catalog entry, if this key may use it and it has a price."""
        if call.sigv4:  # a surface that forgot verify_body must not serve unverified
            raise AuthenticationFailed("The request signature was not verified.")
        key = call.key
        # The key's own list first: a restricted key must not learn the catalog from the
        # 404 an unknown model gets (it lists every model).
        if key is not None and key.models is not None and model not in key.models:
            # A refusal row in the ledger when the model exists, as for other refusals.
            call.entry, call.model, call.stream = self.app.catalog.models.get(model), model, stream
            raise PermissionDenied(f"This API key may not use the model {shown(model)}. "
                                   f"Allowed: {', '.join(key.models)}.", param="model")
        entry = self.app.catalog.get(model)
        call.entry, call.model, call.stream = entry, model, stream
        self.app.pricing.check(entry, call.started)
        return entry

    async def meter(self, call: Call, entry: ModelEntry, input_tokens: int,
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
        except (ConnectionError, TimeoutError, OSError, StoreError) as exc:
            # The workers' coordinator is unreachable (Redis falls back to this replica's
            # counters), or the ledger a budget is seeded from: refuse rather than serve
            # unmetered, and say it is ours and temporary.
            log.error("limits backend unavailable: %s", exc)
            raise Overloaded("Rate limits and budgets are temporarily unavailable; retry shortly.",
                             retry_after=1) from None

    # ---- settlement -------------------------------------------------------------------
    def settle(self, call: Call, *, usage: Usage | None, deployment: Deployment | None,
               attempts: int, status: str, http_status: int, error: str | None,
               ttft_ms: float | None, estimated: bool) -> UsageRecord | None:
        """Price the usage and journal the record (synchronously: before the response is
        sent); the counter corrections run in the background. Use ``Call.settle``: it
        makes sure this runs once."""
        record = None
        if call.entry is not None:  # refused before a model was known: nothing to bill
            record = self._record(call, usage or Usage(), deployment, attempts, status,
                                  http_status, error, ttft_ms, estimated)
            self.app.recorder.record(record)
            key = call.key
            self.app.metrics.record(record, "" if key is None else
                                    key.customer_name or str(key.customer_id))
            call.headers["x-modelmart-cost"] = format_usd(record.price_pico)
        ticket = call.ticket
        if call.key is not None and ((ticket is not None and ticket.token_counters)
                                     or call.reservation is not None):
            tokens = (usage.total_input_tokens + usage.output_tokens) if usage else 0
            task = asyncio.ensure_future(
                self._correct(call, tokens, record.price_pico if record else 0))
            self.app.background.add(task)
            self.app.corrections.add(task)
            task.add_done_callback(self.app.background.discard)
            task.add_done_callback(self.app.corrections.discard)
        return record

    def _record(self, call: Call, usage: Usage, deployment: Deployment | None, attempts: int,
                status: str, http_status: int, error: str | None, ttft_ms: float | None,
                estimated: bool) -> UsageRecord:
        cost = price = 0
        if deployment is not None and (usage.total_input_tokens or usage.output_tokens):
            quote = self.app.pricing.batch_quote if call.batch_id else self.app.pricing.quote
            cost, price = quote(call.entry, deployment, usage, call.started)
        extra = {"usage_estimated": True} if estimated else {}
        if call.batch_id:
            extra["batch_id"] = call.batch_id
        key = call.key
        return UsageRecord(
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
            extra=extra,
        )

    async def _correct(self, call: Call, tokens: int, price: int) -> None:
        try:
            if call.ticket is not None:
                await self.app.limiter.settle(call.ticket, tokens)
            await self.app.budgets.settle(call.reservation, price)
        except Exception:  # the ledger has the truth; counters heal at the next period
            log.exception("settling counters for %s failed", call.rid)
