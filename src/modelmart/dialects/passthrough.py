"""Client fields without a canonical meaning that may reach an upstream of the client's own
dialect, by default, and those the operator would pay for beyond the tokens it bills.

A deployment's catalog key ``passthrough:`` replaces the default list. A field outside the
list is dropped (the response says which, in ``x-modelmart-dropped-params``), except a
cost-bearing one, which is refused: the customer asked for something it would not get, and
passing it would make the operator pay for a service tier, stored conversations, web
searches, audio or predicted outputs that the ledger prices as plain tokens.

Keys are the dialect names of ``Request.source`` and of provider kinds.
"""

from __future__ import annotations

DEFAULT_ALLOWED: dict[str, frozenset[str]] = {
    "openai": frozenset({
        "frequency_penalty", "presence_penalty", "logit_bias", "logprobs", "top_logprobs",
        "reasoning_effort", "verbosity", "metadata", "safety_identifier",
        "prompt_cache_key",
    }),
    "anthropic": frozenset({"thinking", "output_config", "context_management"}),
    # Converse's own top-level fields, and additionalModelRequestFields entries.
    "bedrock": frozenset({
        "requestMetadata", "promptVariables", "additionalModelResponseFieldPaths",
        "top_k", "thinking", "reasoning_config", "reasoningConfig",
    }),
    "gemini": frozenset({"safetySettings", "labels"}),
}

COST_BEARING: dict[str, frozenset[str]] = {
    "openai": frozenset({"service_tier", "store", "web_search_options", "modalities",
                         "audio", "prediction"}),
    "anthropic": frozenset({"mcp_servers", "container", "service_tier"}),
    "bedrock": frozenset({"guardrailConfig", "performanceConfig", "serviceTier",
                          "anthropic_beta"}),
    "gemini": frozenset({"cachedContent"}),
}


# Fields whose answer comes back in the response (OpenAI's log probabilities): refused
# rather than dropped where no deployment can answer them, and never streamed back (the
# stream encoders carry no log probabilities).
RESULT_BEARING: dict[str, frozenset[str]] = {"openai": frozenset({"logprobs", "top_logprobs"})}


def allowed_for(kind: str, configured: list[str] | None) -> frozenset[str]:
    """The fields a deployment of ``kind`` passes on: its catalog list, else the default."""
    if configured is not None:
        return frozenset(configured)
    return DEFAULT_ALLOWED.get(kind, frozenset())


def cost_bearing(dialect: str) -> frozenset[str]:
    return COST_BEARING.get(dialect, frozenset())


def result_bearing(dialect: str) -> frozenset[str]:
    return RESULT_BEARING.get(dialect, frozenset())
