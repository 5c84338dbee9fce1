"""Client fields passed through to upstreams: an allow-list per deployment
(``dialects/passthrough.py`` has the defaults and the cost-bearing fields).

Checked once per request, before admission, against the model's deployments that speak the
client's dialect (only they ever receive such fields): an allowed field stays, a
cost-bearing one that no such deployment allows is a 400, anything else is dropped and named
in ``x-modelmart-dropped-params``. The router then gives each deployment only what its own
list allows.
"""

from __future__ import annotations

from urllib.parse import quote

from modelmart.catalog import Catalog, ModelEntry
from modelmart.core.errors import InvalidRequest
from modelmart.core.types import Request
from modelmart.dialects.passthrough import allowed_for, cost_bearing, result_bearing

DROPPED_HEADER = "x-modelmart-dropped-params"
# Fields that ask for a safeguard, by dialect: never dropped, since the request would then be
# served without it; refused unless every deployment of the model passes them on.
SAFEGUARDS = {"bedrock": {"guardrailConfig": "Guardrails"}}


def resolve(catalog: Catalog) -> None:
    """Give every deployment its effective list (its catalog ``passthrough:``, else the
    default of its dialect), once at startup."""
    for dep in catalog.deployments():
        dep.config.passthrough = allowed_for(dep.config.kind, dep.config.passthrough)


def _check_safeguards(req: Request, entry: ModelEntry) -> None:
    safeguards = SAFEGUARDS.get(req.source)
    if safeguards is None:
        return
    for name, what in safeguards.items():
        if name in req.extra and not all(
                d.config.kind == req.source and name in (d.config.passthrough or ())
                for d in entry.deployments):
            raise InvalidRequest(
                f"{what} ('{name}') are not available on this gateway for the model "
                f"'{entry.id}': only a {req.source} deployment applies them, and every "
                f"deployment of the model must pass them on (catalog key 'passthrough'), or "
                f"a fallback would answer without them.", param=name)


def check(req: Request, entry: ModelEntry, headers: dict[str, str]) -> None:
    extra = req.extra
    if not extra:
        return
    _check_safeguards(req, entry)
    lists = [d.config.passthrough for d in entry.deployments if d.config.kind == req.source]
    allowed = frozenset().union(*lists) if lists else frozenset()
    if allowed.issuperset(extra):
        _check_results(req, entry, allowed)
        return
    _check_results(req, entry, allowed)
    refused = cost_bearing(req.source).intersection(extra).difference(allowed)
    if refused:
        name = sorted(refused)[0]
        raise InvalidRequest(
            f"'{name}' is not available on this gateway for the model '{entry.id}': it "
            f"changes what the provider charges, and the operator has not enabled it "
            f"(catalog key 'passthrough' of the model's deployments).", param=name)
    dropped = sorted(k for k in extra if k not in allowed)
    for name in dropped:
        del extra[name]
    headers[DROPPED_HEADER] = _header_value(dropped)


_SHOWN = 20  # names listed in the header, at most


def _header_value(names: list[str]) -> str:
    """The names as a header value: percent-encoded (a client's field name may hold any
    character, CR and LF included), the first ``_SHOWN`` of them."""
    shown = [quote(name, safe="-_.~$@") for name in names[:_SHOWN]]
    if len(names) > _SHOWN:
        shown.append(f"...{len(names) - _SHOWN} more")
    return ",".join(shown)


def _check_results(req: Request, entry: ModelEntry, allowed: frozenset[str]) -> None:
    """Log probabilities asked for (``logprobs: true``, ``top_logprobs``) must come back or
    be refused: never streamed here, and only from deployments that pass them on."""
    asked = sorted(k for k in result_bearing(req.source) if req.extra.get(k))
    if not asked:
        return
    if req.stream:
        raise InvalidRequest(f"'{asked[0]}' is not available with stream: true on this "
                             f"gateway; ask without streaming to get log probabilities.",
                             param=asked[0])
    if not allowed.issuperset(asked):
        raise InvalidRequest(
            f"'{asked[0]}' is not available for the model '{entry.id}': none of its "
            f"deployments returns log probabilities (only OpenAI-compatible ones do, with "
            f"'{asked[0]}' in their catalog key 'passthrough').", param=asked[0])
