"""The Bedrock control plane's model discovery, for boto3's ``bedrock`` client (not
``bedrock-runtime``): ``list_foundation_models`` and ``get_foundation_model``.

boto3 signs the control plane with the same SigV4 scope as the runtime (service
``bedrock``: both service models have ``signingName: bedrock``), so the same key pairs
(``modelmart keys create --aws``) and the same check (``Admission``) apply; Bedrock API keys
(``Authorization: Bearer``) work too. A key sees only the catalog models it may use and
that have a price (the others would be refused). Nothing is billed, so no call is opened
in the ledger.

What the catalog does not say is derived: the provider from the first deployment (its
preset, or for a Bedrock deployment the vendor in its model id), images in if a deployment
takes them, embeddings out for models whose upstream model is an embeddings model (its id
says ``embed``) and for the bundled model, which does both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelmart.catalog import Deployment, ModelEntry
from modelmart.core.errors import GatewayError, NotFound
from modelmart.dialects import bedrock_converse
from modelmart.dialects.bedrock_invoke import foundation
from modelmart.store.records import ApiKey

from .http import Receive, Scope, Send, header, read_body, send_json

if TYPE_CHECKING:
    from .app import App

PREFIX = "/foundation-models"
DEFAULT_REGION = "us-east-1"
_BRANDS = {"openai": "OpenAI", "azure-openai": "OpenAI", "anthropic": "Anthropic",
           "gemini": "Google", "mistral": "Mistral AI", "groq": "Groq",
           "together": "Together AI", "deepseek": "DeepSeek", "fireworks": "Fireworks AI",
           "openrouter": "OpenRouter", "local": "modelmart"}
_BEDROCK_VENDORS = {"anthropic": "Anthropic", "amazon": "Amazon", "meta": "Meta",
                    "mistral": "Mistral AI", "cohere": "Cohere", "ai21": "AI21 Labs",
                    "deepseek": "DeepSeek", "openai": "OpenAI", "qwen": "Qwen",
                    "writer": "Writer", "twelvelabs": "TwelveLabs"}
_PROFILE_REGIONS = ("us", "eu", "apac", "us-gov", "global", "jp", "au", "ca", "sa", "amer")


async def handle_control(app: "App", scope: Scope, receive: Receive, send: Send) -> None:
    try:
        key = await _authenticate(app, scope, receive)
        if scope["method"] != "GET":
            raise GatewayError(f"Method {scope['method']} is not allowed for {scope['path']}.",
                               status=405, headers={"x-amzn-errortype": "ValidationException"})
        region = _region(scope)
        rest = scope["path"][len(PREFIX):]
        if rest in ("", "/"):
            wanted = foundation.filters(scope.get("query_string", b""))
            models = [m for m in _visible(app, key) if foundation.matches(m, wanted)]
            body = foundation.encode_list(models, region)
        else:
            body = foundation.encode_get(_one(app, key, rest.lstrip("/")), region)
    except GatewayError as err:
        status, data = bedrock_converse.encode_error(err)
        await send_json(send, status, data, bedrock_converse.error_headers(err))
        return
    await send_json(send, 200, body)


async def _authenticate(app: "App", scope: Scope, receive: Receive) -> ApiKey | None:
    """The caller's key, through the same checks as a model request; no ledger call is
    opened (``Call`` is only used for its checks, never entered)."""
    call = app.admission.call("bedrock_control")
    call.authenticate(scope)
    body = await read_body(scope, receive, app.settings.max_body_bytes)
    call.verify_body(scope, body)
    return call.key


def _visible(app: "App", key: ApiKey | None) -> list[foundation.FoundationModel]:
    return [_describe(app, e) for e in app.catalog.models.values() if _usable(app, key, e)]


def _one(app: "App", key: ApiKey | None, segment: str) -> foundation.FoundationModel:
    model_id = foundation.model_identifier(segment)
    entry = app.catalog.models.get(model_id)
    if entry is None or not _usable(app, key, entry):
        raise NotFound(f"The model '{model_id}' is not in this gateway's catalog, or this "
                       "key may not use it; list_foundation_models shows the ones it may.")
    return _describe(app, entry)


def _usable(app: "App", key: ApiKey | None, entry: ModelEntry) -> bool:
    if key is not None and key.models is not None and entry.id not in key.models:
        return False
    try:
        app.pricing.check(entry)
    except GatewayError:
        return False
    return True


def _describe(app: "App", entry: ModelEntry) -> foundation.FoundationModel:
    deployments = entry.deployments
    images = any(d.config.supports_images for d in deployments)
    embeds_only = bool(deployments) and all("embed" in d.config.model.lower()
                                            for d in deployments)
    both = any(d.config.kind == "local" for d in deployments)
    model = foundation.FoundationModel(id=entry.id, name=entry.description or entry.id,
                                       provider=_provider(deployments[0]) if deployments
                                       else "modelmart")
    if embeds_only:
        model.output_modalities, model.streaming = ["EMBEDDING"], False
    elif both:
        model.output_modalities = ["TEXT", "EMBEDDING"]
    if images and not embeds_only:
        model.input_modalities = ["TEXT", "IMAGE"]
    return model


def _provider(dep: Deployment) -> str:
    if dep.config.kind == "bedrock":
        parts = dep.config.model.split(":foundation-model/")[-1].split(".")
        vendor = parts[1] if len(parts) > 2 and parts[0] in _PROFILE_REGIONS else parts[0]
        return _BEDROCK_VENDORS.get(vendor, "Amazon Bedrock")
    return _BRANDS.get(dep.provider, dep.provider)


def _region(scope: Scope) -> str:
    """The region the client signed for (ARNs name it), else us-east-1."""
    value = header(scope, b"authorization") or b""
    _, _, rest = value.decode("latin-1").partition("Credential=")
    scope_parts = rest.split(",", 1)[0].split("/")
    return scope_parts[2] if len(scope_parts) == 5 and scope_parts[2] else DEFAULT_REGION
