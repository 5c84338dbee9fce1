"""An upper bound on a request's input tokens, for budget reservations and token limits;
and an estimate, for billing a stream whose upstream never said what it counted.

A reservation that can be smaller than the bill lets concurrent requests overspend, so this
is a bound, not an estimate: every tokenizer a provider uses (byte-level BPE, SentencePiece
with byte fallback) spends at least one UTF-8 byte of text per token, so the text's UTF-8
length bounds its tokens; what a provider adds around the text is bounded by fixed
allowances: the chat template (role markers, a default system prompt such as SmolLM2's 20
tokens), the tool-use instructions some providers prepend (Anthropic: ~350 tokens), and
images, which are priced by size rather than by their base64 length.

It over-reserves English text about four times; the difference goes back when the request
settles, so only concurrent requests near a budget's end feel it. Routing's context-window
check uses its own cheaper estimate (``routing/capability.py``): a bound would refuse
prompts that fit.
"""

from __future__ import annotations

import math

import orjson

from modelmart.core.types import (
    DocumentBlock, ImageBlock, Request, TextBlock, ThinkingBlock, ToolResultBlock, ToolUseBlock,
)

TEMPLATE_TOKENS = 64  # per request: the chat template and any default system prompt
MESSAGE_TOKENS = 8  # per message: role markers and separators
TOOLS_TOKENS = 512  # once, when tools are offered: the provider's tool-use instructions
# Per image: the dearest image pricing among providers (GPT-4.1-nano's patches x 2.46 reach
# ~3,800 tokens for a large image; Anthropic's ~1,600, Gemini's 258).
IMAGE_TOKENS = 4000
# Per base64 character of a document file (a PDF): its pages' text, compressed in the file,
# and an image of each page (Anthropic, Gemini). Two tokens a character is ~2.7 a byte of
# the file: beyond what any provider bills for a PDF, but it is not a proof.
DOCUMENT_TOKENS_PER_CHAR = 2


def _bytes(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _json_bytes(value) -> int:
    try:
        return len(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError):  # nesting orjson refuses: a looser measure
        return _bytes(str(value))


def input_token_bound(req: Request) -> int:
    """At least as many tokens as any provider can bill for ``req``'s input."""
    size = _bytes(req.system) if req.system else 0
    images = 0
    for message in req.messages:
        for block in message.content:
            b, i = _block(block)
            size += b
            images += i
    if req.tools:
        size += TOOLS_TOKENS
        for tool in req.tools:
            size += _bytes(tool.name) + _bytes(tool.description or "")
            size += _json_bytes(tool.input_schema)
    if req.response_format is not None and req.response_format.schema is not None:
        size += _json_bytes(req.response_format.schema)
    return size + TEMPLATE_TOKENS + MESSAGE_TOKENS * (len(req.messages) + 1) + IMAGE_TOKENS * images


def text_chat_bound(texts) -> int:
    """``input_token_bound`` of a text-only chat whose messages (the system prompt counted as
    one, which only adds) carry ``texts``: what admission reserves for it."""
    texts = list(texts)
    return sum(map(_bytes, texts)) + TEMPLATE_TOKENS + MESSAGE_TOKENS * (len(texts) + 1)


def _block(block) -> tuple[int, int]:
    """(UTF-8 bytes, images) of one content block."""
    cls = type(block)
    if cls is TextBlock or cls is ThinkingBlock:
        return _bytes(block.text), 0
    if cls is ImageBlock:
        return 0, 1
    if cls is DocumentBlock:
        if block.data is not None:
            return DOCUMENT_TOKENS_PER_CHAR * len(block.data), 0
        return _bytes(block.as_text()), 0
    if cls is ToolUseBlock:
        return _bytes(block.id) + _bytes(block.name) + _json_bytes(block.input), 0
    if cls is ToolResultBlock:
        size, images = _bytes(block.tool_use_id), 0
        for inner in block.content:
            b, i = _block(inner)
            size, images = size + b, images + i
        return size, images
    return 0, 0


def embedding_token_bound(inputs: list) -> int:
    """``input_token_bound`` for an embeddings request: its texts (or token-id lists, whose
    length is their count), and a marker or two each."""
    return (sum(len(i) if isinstance(i, list) else _bytes(i) for i in inputs)
            + MESSAGE_TOKENS * len(inputs))


def input_token_estimate(req: Request) -> int:
    """About four characters a token and four a message: what a stream is billed for when
    its upstream never reported usage (marked as estimated in the ledger)."""
    chars = len(req.system or "")
    images = 0
    for message in req.messages:
        for block in message.content:
            cls = type(block)
            if cls is TextBlock:
                chars += len(block.text)
            elif cls is ImageBlock:
                images += 1
            elif cls is ToolUseBlock:
                chars += len(block.name) + len(str(block.input))
            elif cls is ToolResultBlock:
                chars += sum(len(c.text) for c in block.content if type(c) is TextBlock)
            elif cls is DocumentBlock:
                chars += len(block.text or block.data or "")
    for tool in req.tools:
        chars += len(tool.name) + len(tool.description or "") + len(str(tool.input_schema))
    return math.ceil(chars / 4) + 4 * len(req.messages) + 800 * images
