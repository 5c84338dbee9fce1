"""The Bedrock control plane's model discovery (boto3's ``bedrock`` client):
``ListFoundationModels`` (``GET /foundation-models``, filters in the query string) and
``GetFoundationModel`` (``GET /foundation-models/{modelIdentifier}``), in the shapes of the
``bedrock`` 2023-04-20 service model (``FoundationModelSummary`` and
``FoundationModelDetails`` have the same members)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs

from modelmart.core.errors import InvalidRequest

ARN = "arn:aws:bedrock:{region}::foundation-model/{id}"
MODALITIES = ("TEXT", "IMAGE", "EMBEDDING")
INFERENCE_TYPES = ("ON_DEMAND", "PROVISIONED")
CUSTOMIZATIONS = ("FINE_TUNING", "CONTINUED_PRE_TRAINING", "DISTILLATION")


@dataclass(slots=True)
class FoundationModel:
    id: str
    name: str
    provider: str
    input_modalities: list[str] = field(default_factory=lambda: ["TEXT"])
    output_modalities: list[str] = field(default_factory=lambda: ["TEXT"])
    streaming: bool = True


def encode_model(model: FoundationModel, region: str) -> dict:
    return {
        "modelArn": ARN.format(region=region, id=model.id), "modelId": model.id,
        "modelName": model.name, "providerName": model.provider,
        "inputModalities": list(model.input_modalities),
        "outputModalities": list(model.output_modalities),
        "responseStreamingSupported": model.streaming, "customizationsSupported": [],
        "inferenceTypesSupported": ["ON_DEMAND"], "modelLifecycle": {"status": "ACTIVE"},
    }


def encode_list(models: list[FoundationModel], region: str) -> dict:
    return {"modelSummaries": [encode_model(m, region) for m in models]}


def encode_get(model: FoundationModel, region: str) -> dict:
    return {"modelDetails": encode_model(model, region)}


def model_identifier(segment: str) -> str:
    """The catalog id in ``{modelIdentifier}``: an id, or a foundation-model ARN."""
    marker = ":foundation-model/"
    return segment.split(marker, 1)[1] if segment.startswith("arn:") and marker in segment \
        else segment


def filters(query: bytes) -> dict[str, str]:
    """ListFoundationModels' filters, checked against their enums."""
    values = {k: v[-1] for k, v in parse_qs(query.decode("latin-1")).items()}
    known = {"byProvider": None, "byOutputModality": MODALITIES,
             "byInferenceType": INFERENCE_TYPES, "byCustomizationType": CUSTOMIZATIONS}
    for key, value in values.items():
        if key not in known:
            raise InvalidRequest(f"Unknown query parameter '{key}'; known: "
                                 f"{', '.join(known)}.", param=key)
        allowed = known[key]
        if allowed is not None and value not in allowed:
            raise InvalidRequest(f"{key}: '{value}' must be one of {', '.join(allowed)}.",
                                 param=key)
    return values


def matches(model: FoundationModel, wanted: dict[str, str]) -> bool:
    provider = wanted.get("byProvider")
    if provider is not None and provider.lower() != model.provider.lower():
        return False
    modality = wanted.get("byOutputModality")
    if modality is not None and modality not in model.output_modalities:
        return False
    if wanted.get("byInferenceType", "ON_DEMAND") != "ON_DEMAND":
        return False
    return "byCustomizationType" not in wanted  # nothing here is customizable
