"""The admin API against its own OpenAPI document (``/admin/openapi.json``), with
schemathesis: requests the document allows must be accepted (or be 404/409 for a customer
or key that does not exist or already does), requests it forbids must be refused with a
4xx, every status and response body must be one the document lists, and never a 5xx. Then
structure-aware mutations of valid bodies, as for the model surfaces."""

from __future__ import annotations

import httpx
import schemathesis
from hypothesis import given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.checks import (
    content_type_conformance, negative_data_rejection, not_a_server_error,
    positive_data_acceptance, response_schema_conformance, status_code_conformance,
)

from . import seeds
from .client import Clock, Problem, Sender
from .mutate import mutated
from .runs import fuzz_settings

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, positive_data_acceptance, negative_data_rejection]


def admin_cases(spec: dict) -> st.SearchStrategy:
    schema = schemathesis.openapi.from_dict(spec)
    operations = [result.ok() for result in schema.get_all_operations()]
    return st.one_of([op.as_strategy(generation_mode=mode) for op in operations
                      for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)]
                     ).filter(_sent_as_generated)


def _sent_as_generated(case) -> bool:
    """False for a query parameter whose value is an empty list: it is not sent at all, so
    a "negative" case with one is the valid request without it."""
    return not any(value == [] for value in (case.query or {}).values())


def test_admin_api_keeps_to_its_openapi_document(admin_gateway, tally):
    spec = httpx.get(f"{admin_gateway.url}/admin/openapi.json").json()
    auth = {"authorization": f"Bearer {admin_gateway.admin_key}"}
    sender = Sender(admin_gateway.url)

    @fuzz_settings(400)
    @given(admin_cases(spec))
    def one(case) -> None:
        response = case.call(base_url=admin_gateway.url, headers=auth)
        body = b"" if case.body is None or isinstance(case.body, type(...)) else repr(
            case.body).encode()
        tally.judge("admin-openapi", "openai", body, response)
        # An operation whose validity JSON Schema cannot fully state (one date after
        # another) may refuse a request its schema allows: every other check still holds.
        checks = CHECKS if "x-modelmart-constraints" not in case.operation.definition.raw \
            else [c for c in CHECKS if c is not positive_data_acceptance]
        try:
            case.validate_response(response, checks=checks, headers=auth)
        except FailureGroup as failure:  # every check that failed
            tally.problems.append(Problem(
                "admin-openapi", str(failure)[:600], f"{case.method} {case.formatted_path} "
                f"{case.query} {case.body!r}"[:600].encode(), response.status_code,
                response.content[:600]))

    with Clock(tally, "admin-openapi"):
        one()
    assert sender.alive(), "the gateway stopped answering /health"
    problems = tally.of("admin-openapi")
    assert not problems, "\n".join(f"{p.what}\n  for {p.request!r}" for p in problems[:8])


def test_admin_bodies_mutated(admin_gateway, tally):
    sender = Sender(admin_gateway.url)
    auth = {"authorization": f"Bearer {admin_gateway.admin_key}"}
    sender.request("POST", "/admin/v1/customers", b'{"name": "fuzz-admin-co"}', auth)
    paths = {"customers": "/admin/v1/customers", "keys": "/admin/v1/keys"}
    bodies = st.sampled_from(sorted(paths)).flatmap(
        lambda kind: st.tuples(st.just(paths[kind]), mutated(seeds.ADMIN[kind])))

    @fuzz_settings(400)
    @given(bodies)
    def one(target) -> None:
        path, body = target
        response = sender.request("POST", path, body, {**auth, "content-type": "application/json"})
        tally.judge("admin-bodies", "openai", body, response)

    with Clock(tally, "admin-bodies"):
        one()
    tally.reconnects.update(sender.reconnects)
    assert sender.alive(), "the gateway stopped answering /health"
    problems = tally.of("admin-bodies")
    assert not problems, "\n".join(f"{p.what}: {p.status} {p.answer[:300]!r}\n  for "
                                   f"{p.request[:300]!r}" for p in problems[:8])
