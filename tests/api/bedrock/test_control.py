"""The Bedrock control plane's model discovery with boto3's ``bedrock`` client, unchanged:
``list_foundation_models`` and ``get_foundation_model``, SigV4-verified, only the models the
key may use, in AWS's shapes."""

from __future__ import annotations

import botocore.exceptions
import httpx
import pytest

from tests.conformance.providers import MODEL

from .helpers import EMBED_MODELS, client, new_aws_pair

SUMMARY_KEYS = {"modelArn", "modelId", "modelName", "providerName", "inputModalities",
                "outputModalities", "responseStreamingSupported", "customizationsSupported",
                "inferenceTypesSupported", "modelLifecycle"}


@pytest.fixture
def control(bedrock_gateway, aws_pair):
    return client(bedrock_gateway, aws_pair, "bedrock", region="eu-west-1")


def test_list_shows_every_model_in_aws_shape(control, bedrock_gateway):
    summaries = control.list_foundation_models()["modelSummaries"]
    by_id = {s["modelId"]: s for s in summaries}
    assert set(by_id) == set(bedrock_gateway.app.catalog.models)
    for summary in summaries:
        assert set(summary) == SUMMARY_KEYS
        assert summary["modelArn"] == f"arn:aws:bedrock:eu-west-1::foundation-model/{summary['modelId']}"
        assert summary["inferenceTypesSupported"] == ["ON_DEMAND"]
        assert summary["modelLifecycle"] == {"status": "ACTIVE"}
    assert by_id[MODEL["openai"]]["providerName"] == "OpenAI"
    assert by_id[MODEL["anthropic"]]["providerName"] == "Anthropic"
    assert by_id[MODEL["bedrock"]]["providerName"] == "Anthropic"  # anthropic.claude-... on Bedrock
    assert by_id[MODEL["gemini"]]["providerName"] == "Google"
    assert by_id[EMBED_MODELS["titan"]]["providerName"] == "Amazon"
    assert by_id[MODEL["openai"]]["inputModalities"] == ["TEXT", "IMAGE"]
    assert by_id[MODEL["local"]]["inputModalities"] == ["TEXT"]  # the bundled model sees no images
    assert by_id[MODEL["local"]]["outputModalities"] == ["TEXT", "EMBEDDING"]
    titan = by_id[EMBED_MODELS["titan"]]
    assert titan["outputModalities"] == ["EMBEDDING"] and not titan["responseStreamingSupported"]


def test_filters(control):
    def ids(**filters):
        return {s["modelId"] for s in control.list_foundation_models(**filters)["modelSummaries"]}

    assert ids(byProvider="openai") == {MODEL["openai"], EMBED_MODELS["openai"]}
    assert ids(byOutputModality="EMBEDDING") == set(EMBED_MODELS.values())  # local included
    assert ids(byInferenceType="PROVISIONED") == set()
    assert ids(byCustomizationType="FINE_TUNING") == set()
    with pytest.raises(control.exceptions.ValidationException):
        control.list_foundation_models(byOutputModality="VIDEO")


def test_a_key_sees_only_its_models(bedrock_gateway):
    pair = new_aws_pair(bedrock_gateway, models=[MODEL["openai"], EMBED_MODELS["titan"]])
    control = client(bedrock_gateway, pair, "bedrock")
    listed = {s["modelId"] for s in control.list_foundation_models()["modelSummaries"]}
    assert listed == {MODEL["openai"], EMBED_MODELS["titan"]}
    with pytest.raises(control.exceptions.ResourceNotFoundException) as e:
        control.get_foundation_model(modelIdentifier=MODEL["anthropic"])
    assert "may not use it" in e.value.response["Error"]["Message"]


def test_get_by_id_and_by_arn(control):
    details = control.get_foundation_model(modelIdentifier=MODEL["gemini"])["modelDetails"]
    assert set(details) == SUMMARY_KEYS and details["modelId"] == MODEL["gemini"]
    arn = details["modelArn"]
    assert control.get_foundation_model(modelIdentifier=arn)["modelDetails"] == details
    with pytest.raises(control.exceptions.ResourceNotFoundException):
        control.get_foundation_model(modelIdentifier="no-such.model-v1")


def test_signatures_are_checked(bedrock_gateway, aws_pair):
    bad = client(bedrock_gateway, (aws_pair[0], "not-the-secret-0000000000000000000000000"), "bedrock")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        bad.list_foundation_models()
    assert e.value.response["Error"]["Code"] == "InvalidSignatureException"
    unknown = client(bedrock_gateway, ("AKMMNOTAREALKEY00000", "x"), "bedrock")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        unknown.get_foundation_model(modelIdentifier=MODEL["openai"])
    assert e.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_api_keys_and_no_key(bedrock_gateway):
    url = bedrock_gateway.url + "/foundation-models"
    ok = httpx.get(url, headers={"authorization": f"Bearer {bedrock_gateway.key}"})
    assert ok.status_code == 200 and ok.json()["modelSummaries"]
    refused = httpx.get(url)
    assert refused.status_code == 401 and refused.json()["message"]
    assert refused.headers["x-amzn-errortype"]


def test_other_control_plane_operations_say_so(control):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        control.list_inference_profiles()
    assert e.value.response["Error"]["Code"] == "UnknownOperationException"
    assert "ListFoundationModels" in e.value.response["Error"]["Message"]
