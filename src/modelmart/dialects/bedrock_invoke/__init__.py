"""Bedrock ``InvokeModel`` / ``InvokeModelWithResponseStream`` bodies
(``POST /model/{modelId}/invoke``, ``/invoke-with-response-stream``).

InvokeModel's body is the model's own: which one a client sent is read from its shape
(``family_of``), since the model id here is a catalog id that may be served by any
provider. Each family decodes into the canonical ``Request`` (or ``EmbeddingRequest``) and
encodes the answer back in its own shape:

===================  ===============================================  =====================
family               recognised by                                    module
===================  ===============================================  =====================
``anthropic``        ``anthropic_version``                            ``anthropic``
``nova``             ``schemaVersion: messages-v1``, or ``messages``  ``nova``
                     whose contents are lists of ``{"text"}``-style
                     blocks
``titan_text``       ``inputText`` with ``textGenerationConfig``      ``completion``
``titan_embed``      ``inputText`` alone                              ``embeddings``
``nova_embed``       ``taskType`` / ``singleEmbeddingParams``         ``embeddings``
``cohere_embed``     ``texts``                                        ``embeddings``
``llama``            ``prompt`` with ``max_gen_len`` or Llama 3/4     ``completion``
                     template markers
``mistral``          any other ``prompt``                             ``completion``
===================  ===============================================  =====================

A body that fits none is a ValidationException naming what each family needs. Errors are
Converse's (``bedrock_converse.encode_error`` with ``error_headers``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import unquote

from modelmart.core.embeddings import EmbeddingRequest
from modelmart.core.errors import InvalidRequest
from modelmart.core.types import Request
from modelmart.dialects.bedrock_converse.errors import encode_error, error_headers

from . import anthropic, completion, embeddings, nova
from ._check import describe
from .embeddings import EmbeddingOptions


@dataclass(frozen=True, slots=True)
class Family:
    """One body family: its decoder and the encoders a ``Surface`` calls (the shape of a
    dialect module: ``encode_response``, ``StreamEncoder``, ``encode_error``,
    ``error_headers``)."""

    name: str
    decode: Callable[..., Any]
    encode_response: Callable[..., dict] | None = None
    StreamEncoder: type | None = None
    id_prefix: str = ""
    embeds: bool = False
    encode_error: Callable = encode_error
    error_headers: Callable = error_headers


FAMILIES = {f.name: f for f in (
    Family("anthropic", anthropic.decode, anthropic.encode_response, anthropic.StreamEncoder,
           anthropic.ID_PREFIX),
    Family("nova", nova.decode, nova.encode_response, nova.StreamEncoder),
    Family("llama", completion.decode_llama, completion.encode_llama, completion.LlamaStream),
    Family("mistral", completion.decode_mistral, completion.encode_mistral,
           completion.MistralStream),
    Family("titan_text", completion.decode_titan, completion.encode_titan,
           completion.TitanStream),
    Family(embeddings.TITAN, embeddings.decode_titan, embeds=True),
    Family(embeddings.NOVA, embeddings.decode_nova, embeds=True),
    Family(embeddings.COHERE, embeddings.decode_cohere, embeds=True),
)}
# Errors before the body's family is known are Converse-shaped too.
ERRORS = Family("errors", lambda *a, **k: None)

_LLAMA_MARKERS = ("<|begin_of_text|>", "<|start_header_id|>", "<|header_start|>")
_FOUNDATION_ARN = ":foundation-model/"
_KNOWN_SHAPES = (
    "anthropic_version (Anthropic Messages), schemaVersion 'messages-v1' or messages with "
    "content lists (Amazon Nova), prompt (Meta Llama: with max_gen_len; Mistral), inputText "
    "with textGenerationConfig (Titan Text), inputText alone (Titan embeddings), taskType "
    "(Nova embeddings) or texts (Cohere embeddings)")


@dataclass(slots=True)
class Decoded:
    family: Family
    request: Request | EmbeddingRequest
    options: EmbeddingOptions | None = None  # embeddings only


def model_id_of(path_segment: str) -> str:
    """The catalog id in a path's ``{modelId}``: percent-decoded, and a foundation-model
    ARN (as ``ListFoundationModels`` gives them) reduced to its id."""
    model_id = unquote(path_segment)
    if model_id.startswith("arn:") and _FOUNDATION_ARN in model_id:
        return model_id.split(_FOUNDATION_ARN, 1)[1]
    return model_id


def family_of(data: Any) -> Family:
    if not isinstance(data, dict):
        raise InvalidRequest(f"request body must be a JSON object, got {describe(data)}")
    if "anthropic_version" in data:
        return FAMILIES["anthropic"]
    if "schemaVersion" in data and "messages" in data:
        return FAMILIES["nova"]
    if "taskType" in data or "singleEmbeddingParams" in data:
        return FAMILIES[embeddings.NOVA]
    if "inputText" in data:
        return FAMILIES["titan_text" if "textGenerationConfig" in data else embeddings.TITAN]
    if "texts" in data:
        return FAMILIES[embeddings.COHERE]
    if "prompt" in data:
        prompt = data["prompt"]
        llama = "max_gen_len" in data or (isinstance(prompt, str) and any(
            m in prompt for m in _LLAMA_MARKERS))
        return FAMILIES["llama" if llama else "mistral"]
    if "messages" in data:
        return _messages_family(data["messages"])
    raise _unknown("the body fits no model family served here")


def _messages_family(messages: Any) -> Family:
    """Nova's turns hold lists of one-member blocks ({"text": ...}); Anthropic's blocks have
    a "type", and chat-completions turns hold strings."""
    turns = messages if isinstance(messages, list) else []
    blocks = [b for t in turns if isinstance(t, dict) and isinstance(t.get("content"), list)
              for b in t["content"]]
    if any(isinstance(b, dict) and "type" in b for b in blocks):
        raise _unknown("an Anthropic Messages body needs anthropic_version: "
                       f"'{anthropic.VERSION}'")
    if any(isinstance(t, dict) and isinstance(t.get("content"), str) for t in turns):
        raise _unknown("chat-completions bodies (messages with string contents) are not "
                       "served by InvokeModel here; use Converse, or a Nova body "
                       "(content: [{\"text\": ...}])")
    return FAMILIES["nova"]


def _unknown(why: str) -> InvalidRequest:
    return InvalidRequest(f"Malformed input request: {why}. InvokeModel bodies are "
                          f"recognised by their fields: {_KNOWN_SHAPES}.")


def decode_request(data: Any, model_id: str, *, stream: bool = False) -> Decoded:
    """The body's family and what it asks, in canonical terms. Embeddings bodies cannot
    stream."""
    if not model_id:
        raise InvalidRequest("modelId: must not be empty", param="modelId")
    family = family_of(data)
    if family.embeds:
        if stream:
            raise InvalidRequest(f"The model family of this body ({family.name}) does not "
                                 "stream; call InvokeModel instead.")
        request, options = family.decode(data, model_id)
        return Decoded(family, request, options)
    return Decoded(family, family.decode(data, model_id, stream=stream))


# Request headers of InvokeModel that would ask for something the gateway does not do.
_GUARDRAIL_HEADERS = (b"x-amzn-bedrock-guardrailidentifier", b"x-amzn-bedrock-guardrailversion")
# Settings whose one value is what the gateway does anyway: (that value, boto3's name).
_SETTINGS = {b"x-amzn-bedrock-performanceconfig-latency": ("standard", "performanceConfigLatency"),
             b"x-amzn-bedrock-service-tier": ("default", "serviceTier"),
             b"x-amzn-bedrock-trace": ("disabled", "trace")}


def check_headers(headers: list[tuple[bytes, bytes]]) -> None:
    """Refuse guardrails and paid service levels asked for in headers (boto3's
    ``guardrailIdentifier``, ``trace``, ``performanceConfigLatency``, ``serviceTier``): the
    client would believe it got them."""
    for name, value in headers:
        if name in _GUARDRAIL_HEADERS:
            raise InvalidRequest("Guardrails are not available on this gateway: remove "
                                 "guardrailIdentifier and guardrailVersion from the request.",
                                 param="guardrailIdentifier")
        setting = _SETTINGS.get(name)
        if setting is not None and value.decode("latin-1").strip().lower() != setting[0]:
            raise InvalidRequest(f"{setting[1]} '{value.decode('latin-1')}' is not available "
                                 f"on this gateway; only '{setting[0]}' is.", param=setting[1])


__all__ = ["Decoded", "ERRORS", "FAMILIES", "Family", "check_headers", "decode_request",
           "encode_error", "error_headers", "family_of", "model_id_of"]
