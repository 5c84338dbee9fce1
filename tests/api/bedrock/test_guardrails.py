"""Converse's guardrailConfig: a safeguard, so never dropped on the way to an upstream. It
passes only when every deployment of the model is a Bedrock one that passes it on (the
operator's ``passthrough:``); otherwise it is a ValidationException naming guardrails (the
boto3 end of it is in test_invoke.py)."""

from __future__ import annotations

import pytest

from modelmart.api import passthrough
from modelmart.catalog.loader import parse_catalog
from modelmart.core.errors import InvalidRequest
from modelmart.dialects import bedrock_converse

BEDROCK = {"provider": "bedrock", "model": "amazon.nova-lite-v1:0",
           "options": {"aws_access_key_id": "AKID", "aws_secret_access_key": "secret"}}
OPENAI = {"provider": "openai", "model": "gpt-4o-mini", "api_key": "sk-x"}
ALLOWS = ["guardrailConfig"]
BODY = {"messages": [{"role": "user", "content": [{"text": "hi"}]}],
        "guardrailConfig": {"guardrailIdentifier": "gr-1", "guardrailVersion": "1"}}


def entry(*deployments):
    catalog = parse_catalog({"bundled_model": False, "models": {"m": {
        "deployments": [dict(d, name=f"m/{i}") for i, d in enumerate(deployments)]}}})
    passthrough.resolve(catalog)
    return catalog.get("m")


def check(model):
    req = bedrock_converse.decode_request(BODY, "m")
    req.source = "bedrock"
    headers: dict = {}
    passthrough.check(req, model, headers)
    return req, headers


@pytest.mark.parametrize("deployments", [
    (BEDROCK,),  # the default list does not pass it
    ({**BEDROCK, "passthrough": ALLOWS}, OPENAI),  # a fallback would answer without it
    (OPENAI,),
    ({**BEDROCK, "passthrough": ALLOWS}, BEDROCK),
])
def test_refused_unless_every_deployment_applies_it(deployments):
    with pytest.raises(InvalidRequest) as e:
        check(entry(*deployments))
    assert e.value.param == "guardrailConfig"
    assert e.value.message.startswith("Guardrails ('guardrailConfig') are not available")


def test_passed_when_every_deployment_is_bedrock_and_allows_it():
    req, headers = check(entry({**BEDROCK, "passthrough": ALLOWS},
                               {**BEDROCK, "passthrough": ALLOWS}))
    assert req.extra["guardrailConfig"] == BODY["guardrailConfig"] and not headers
