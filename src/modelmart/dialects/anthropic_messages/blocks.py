"""Content blocks of request messages: wire JSON <-> canonical blocks."""

from __future__ import annotations

from typing import Any

from modelmart.core.errors import InvalidRequest
from modelmart.core.types import (
    Block, DocumentBlock, ImageBlock, TextBlock, ThinkingBlock, ToolResultBlock, ToolUseBlock,
)

from . import _check as check

IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_KNOWN = "text, image, document, tool_use, tool_result, thinking, redacted_thinking"
# Blocks only one side of the conversation may send, as the Messages API enforces.
_ROLE_OF = {"tool_use": "assistant", "thinking": "assistant",
            "redacted_thinking": "assistant", "tool_result": "user", "document": "user"}
PDF = "application/pdf"


def decode_content(content: Any, role: str, param: str) -> list[Block]:
    if isinstance(content, str):
        return [TextBlock(content)] if content else []
    blocks = check.array(content, param)
    out: list[Block] = []
    for i, raw in enumerate(blocks):
        block = decode_block(raw, role, f"{param}.{i}")
        if block is not None:
            out.append(block)
    return out


def decode_block(raw: Any, role: str, param: str) -> Block | None:
    data = check.obj(raw, param)
    kind = check.string(check.required(data, "type", f"{param}.type"), f"{param}.type")
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise check.fail(f"unsupported content block type {kind!r}; expected one of {_KNOWN}",
                         f"{param}.type")
    wanted = _ROLE_OF.get(kind)
    if wanted is not None and wanted != role:
        raise check.fail(f"{kind} blocks may only appear in {wanted} messages", f"{param}.type")
    return decoder(data, param)


def _text(data: dict, param: str) -> TextBlock:
    return TextBlock(check.string(check.required(data, "text", f"{param}.text"), f"{param}.text"))


def _image(data: dict, param: str) -> ImageBlock:
    p = f"{param}.source"
    source = check.obj(check.required(data, "source", p), p)
    kind = source.get("type")
    if kind == "base64":
        media = check.string(check.required(source, "media_type", f"{p}.media_type"),
                             f"{p}.media_type")
        if media not in IMAGE_MEDIA_TYPES:
            raise check.fail(f"unsupported image media type {media!r}; expected one of "
                             f"{', '.join(IMAGE_MEDIA_TYPES)}", f"{p}.media_type")
        payload = check.string(check.required(source, "data", f"{p}.data"), f"{p}.data",
                               nonempty=True)
        return ImageBlock(media_type=media, data=payload)
    if kind == "url":
        url = check.string(check.required(source, "url", f"{p}.url"), f"{p}.url", nonempty=True)
        return ImageBlock(url=url)
    raise check.fail(f"unsupported image source type {check.shown(kind)}; expected base64 or url",
                     f"{p}.type")


def _document(data: dict, param: str) -> DocumentBlock:
    """A PDF (base64) or a text document (``text``, or ``content`` text blocks)."""
    citations = data.get("citations")
    if citations is not None and check.obj(citations, f"{param}.citations").get("enabled"):
        raise check.fail("citations are not supported by this gateway; send the document "
                         "with citations off", f"{param}.citations.enabled")
    title, context = data.get("title"), data.get("context")
    doc = DocumentBlock(PDF, name=None if title is None else check.string(title, f"{param}.title"),
                        context=None if context is None else check.string(
                            context, f"{param}.context"))
    p = f"{param}.source"
    source = check.obj(check.required(data, "source", p), p)
    kind = source.get("type")
    if kind == "base64":
        media = check.required(source, "media_type", f"{p}.media_type")
        if media != PDF:
            raise check.fail(f"base64 documents must be {PDF}, got {media!r}", f"{p}.media_type")
        doc.data = check.string(check.required(source, "data", f"{p}.data"), f"{p}.data",
                                nonempty=True)
    elif kind == "text":
        if source.get("media_type", "text/plain") != "text/plain":
            raise check.fail("text documents must be text/plain", f"{p}.media_type")
        doc.media_type = "text/plain"
        doc.text = check.string(check.required(source, "data", f"{p}.data"), f"{p}.data")
    elif kind == "content":
        doc.media_type, doc.text = "text/plain", _content_text(source.get("content"), p)
    elif kind == "url":
        raise check.fail("documents by URL are not supported by this gateway; send the PDF "
                         "as base64", f"{p}.type")
    else:
        raise check.fail(f"unsupported document source type {kind!r}; expected base64, "
                         f"text or content", f"{p}.type")
    return doc


def _content_text(content: Any, param: str) -> str:
    """A ``content`` document's text blocks, one after the other."""
    if isinstance(content, str):
        return content
    texts = []
    for i, raw in enumerate(check.array(content, f"{param}.content")):
        item = check.obj(raw, f"{param}.content.{i}")
        if item.get("type") != "text":
            raise check.fail("content documents may hold text blocks only",
                             f"{param}.content.{i}.type")
        texts.append(_text(item, f"{param}.content.{i}").text)
    return "\n\n".join(texts)


def _tool_use(data: dict, param: str) -> ToolUseBlock:
    return ToolUseBlock(
        id=check.string(check.required(data, "id", f"{param}.id"), f"{param}.id", nonempty=True),
        name=check.string(check.required(data, "name", f"{param}.name"), f"{param}.name",
                          nonempty=True),
        input=check.shallow(check.obj(check.required(data, "input", f"{param}.input"),
                                      f"{param}.input"), f"{param}.input"),
    )


def _tool_result(data: dict, param: str) -> ToolResultBlock:
    p_id = f"{param}.tool_use_id"
    tool_use_id = check.string(check.required(data, "tool_use_id", p_id), p_id, nonempty=True)
    is_error = data.get("is_error")
    result = ToolResultBlock(tool_use_id, is_error=bool(
        is_error is not None and check.boolean(is_error, f"{param}.is_error")))
    content = data.get("content")
    if content is None:
        return result
    p = f"{param}.content"
    if isinstance(content, str):
        result.content = [TextBlock(content)] if content else []
        return result
    for i, raw in enumerate(check.array(content, p)):
        item = check.obj(raw, f"{p}.{i}")
        if item.get("type") not in ("text", "image"):
            raise check.fail(f"tool_result content blocks must be text or image, "
                             f"got {check.shown(item.get('type'))}", f"{p}.{i}.type")
        result.content.append(_DECODERS[item["type"]](item, f"{p}.{i}"))
    return result


def _thinking(data: dict, param: str) -> ThinkingBlock:
    text = check.string(check.required(data, "thinking", f"{param}.thinking"),
                        f"{param}.thinking")
    signature = data.get("signature")
    if signature is not None:
        check.string(signature, f"{param}.signature")
    return ThinkingBlock(text, signature)


def _redacted(data: dict, param: str) -> None:
    # Canonical has no encrypted-reasoning block; other upstreams could not read it anyway.
    return None


_DECODERS = {"text": _text, "image": _image, "document": _document, "tool_use": _tool_use,
             "tool_result": _tool_result, "thinking": _thinking,
             "redacted_thinking": _redacted}


# ---- canonical -> wire ------------------------------------------------------------------


def encode_block(block: Block) -> dict | None:
    """Wire JSON for one block, or None for a block Anthropic would reject and that carries
    nothing it needs (empty text, a thinking block some other provider made, unsigned)."""
    if isinstance(block, TextBlock):
        return {"type": "text", "text": block.text} if block.text else None
    if isinstance(block, ImageBlock):
        return encode_image(block)
    if isinstance(block, ToolUseBlock):
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    if isinstance(block, ToolResultBlock):
        return _encode_tool_result(block)
    if isinstance(block, ThinkingBlock):
        if not block.signature:
            return None
        return {"type": "thinking", "thinking": block.text, "signature": block.signature}
    if isinstance(block, DocumentBlock):
        return encode_document(block)
    raise InvalidRequest(f"cannot send a {type(block).__name__} to an Anthropic upstream")


def encode_document(block: DocumentBlock) -> dict:
    """A PDF as base64, any text document as text/plain (citations off)."""
    if block.data is not None:
        if block.media_type != PDF:
            raise InvalidRequest(f"Anthropic reads PDF and text documents, not "
                                 f"{block.media_type}", param="messages")
        source = {"type": "base64", "media_type": PDF, "data": block.data}
    else:
        source = {"type": "text", "media_type": "text/plain", "data": block.text or ""}
    out: dict[str, Any] = {"type": "document", "source": source}
    if block.name:
        out["title"] = block.name
    if block.context:
        out["context"] = block.context
    return out


def encode_image(block: ImageBlock) -> dict:
    if block.data is not None:
        if not block.media_type:
            raise InvalidRequest("an inline image needs a media_type")
        source = {"type": "base64", "media_type": block.media_type, "data": block.data}
    elif block.url:
        source = {"type": "url", "url": block.url}
    else:
        raise InvalidRequest("an image needs either data or a url")
    return {"type": "image", "source": source}


def _encode_tool_result(block: ToolResultBlock) -> dict:
    out: dict[str, Any] = {"type": "tool_result", "tool_use_id": block.tool_use_id}
    parts = [p for p in (encode_block(c) for c in block.content) if p is not None]
    if parts:
        out["content"] = parts
    if block.is_error:
        out["is_error"] = True
    return out
