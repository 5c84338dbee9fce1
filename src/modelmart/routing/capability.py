"""What a request needs from a deployment, and a cheap estimate of its size in tokens."""

from __future__ import annotations

import orjson

from modelmart.catalog import Deployment
from modelmart.core.errors import InvalidRequest
from modelmart.core.types import (
    DocumentBlock, ImageBlock, Request, TextBlock, ThinkingBlock, ToolResultBlock, ToolUseBlock,
)

# An image costs providers roughly this many tokens; its base64 length says nothing useful.
IMAGE_TOKENS = 1000
CHARS_PER_TOKEN = 4
# Upstream kinds that read documents given as files, by media type (a PDF: Anthropic,
# Bedrock and Gemini; office files: Bedrock alone). Text documents are text to every one.
PDF_READERS = frozenset({"anthropic", "bedrock", "gemini"})
FILE_READERS = {"application/pdf": PDF_READERS}


def estimate_input_tokens(req: Request) -> int:
    """About chars/4 of everything the model reads. Cheap on purpose: it runs for every
    request, and only has to tell a 3k prompt from a 300k one."""
    chars, images = len(req.system or ""), 0
    for msg in req.messages:
        for block in msg.content:
            c, i = _block_size(block)
            chars, images = chars + c, images + i
    for tool in req.tools:
        chars += len(tool.name) + len(tool.description or "") + _json_size(tool.input_schema)
    return chars // CHARS_PER_TOKEN + images * IMAGE_TOKENS


def _block_size(block) -> tuple[int, int]:
    """(characters, images) in one content block."""
    if isinstance(block, (TextBlock, ThinkingBlock)):
        return len(block.text), 0
    if isinstance(block, ImageBlock):
        return 0, 1
    if isinstance(block, ToolUseBlock):
        return len(block.name) + _json_size(block.input), 0
    if isinstance(block, ToolResultBlock):
        sizes = [_block_size(b) for b in block.content]
        return sum(c for c, _ in sizes), sum(i for _, i in sizes)
    if isinstance(block, DocumentBlock):
        return len(block.text or block.data or ""), 0
    return 0, 0


def _json_size(value) -> int:
    # The dialects bound what clients send; a request made in code (an eval) is not decoded,
    # and one the JSON encoder refuses (nested past 255 levels) could reach no upstream.
    try:
        return len(orjson.dumps(value))
    except orjson.JSONEncodeError as err:
        raise InvalidRequest(f"the request cannot be encoded as JSON: {err}") from None


def why_unable(dep: Deployment, req: Request, input_tokens: int) -> str | None:
    """Why ``dep`` cannot serve ``req`` (a phrase for the error message), or None."""
    cfg = dep.config
    if req.tools and not cfg.supports_tools and not (
        req.tool_choice and req.tool_choice.type == "none"
    ):
        return "tools"
    if not cfg.supports_images and req.needs_images():
        return "images"
    # OpenAI chat clients send no documents (messages_in.py makes none): their requests,
    # the busiest, skip the scan (~0.6 us on a loaded 2-core machine).
    if cfg.kind != "bedrock" and req.source != "openai":
        for media_type in req.binary_documents():
            if cfg.kind not in FILE_READERS.get(media_type, ()):
                return "PDF documents" if media_type == "application/pdf" else (
                    f"{media_type} documents")
    if req.extra and req.source == "openai" and req.extra.get("logprobs") and (
            cfg.kind != "openai" or "logprobs" not in (cfg.passthrough or ())):
        return "logprobs"
    rf = req.response_format
    if rf and rf.type == "json_schema" and not cfg.supports_json_schema:
        return "JSON schema output"
    if cfg.context_window is not None and input_tokens > cfg.context_window:
        return f"a prompt of about {input_tokens} tokens (context window {cfg.context_window})"
    return None
