"""Content blocks (the ``ContentBlock`` union): wire JSON <-> canonical blocks.

Binary fields (image bytes) travel base64-encoded in Converse JSON, which is exactly the
canonical ``ImageBlock.data``, so images pass through without decoding.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import orjson

from modelmart.core.errors import InvalidRequest
from modelmart.core.types import (
    Block, DocumentBlock, ImageBlock, TextBlock, ThinkingBlock, ToolResultBlock, ToolUseBlock,
)

from . import _check as check

IMAGE_FORMATS = ("png", "jpeg", "gif", "webp")
_MEDIA_TO_FORMAT = {f"image/{f}": f for f in IMAGE_FORMATS} | {"image/jpg": "jpeg"}
_KNOWN = ("text", "image", "toolUse", "toolResult", "reasoningContent", "cachePoint",
          "guardContent", "document", "video", "audio", "citationsContent", "searchResult")
# Blocks only one side of the conversation may send, as the Converse API enforces.
_ROLE_OF = {"toolUse": "assistant", "reasoningContent": "assistant",
            "toolResult": "user", "image": "user", "document": "user"}
_UNSUPPORTED = ("video", "audio", "citationsContent", "searchResult")
# Document formats and the media types canonical blocks carry; the text ones travel as
# text, so that upstreams without document blocks can read them too.
DOCUMENT_MEDIA = {
    "pdf": "application/pdf", "txt": "text/plain", "md": "text/markdown", "csv": "text/csv",
    "html": "text/html", "doc": "application/msword",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xls": "application/vnd.ms-excel",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
_DOCUMENT_FORMAT = {media: fmt for fmt, media in DOCUMENT_MEDIA.items()}
_NAME_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9\s\-()\[\]]+")
_RESULT_KNOWN = ("text", "json", "image", "document", "video", "searchResult")


def decode_content(value: Any, role: str, param: str) -> list[Block]:
    out: list[Block] = []
    for i, raw in enumerate(check.array(value, param)):
        block = decode_block(raw, role, f"{param}.{i}")
        if block is not None:
            out.append(block)
    return out


def decode_block(raw: Any, role: str, param: str) -> Block | None:
    kind, value = check.union(raw, param, _KNOWN, what="content block member")
    if kind in _UNSUPPORTED:
        raise check.fail(f"{kind} content blocks are not supported by this gateway", param)
    decoder = _DECODERS[kind]
    wanted = _ROLE_OF.get(kind)
    if wanted is not None and wanted != role:
        raise check.fail(f"{kind} blocks may only appear in {wanted} messages", param)
    return decoder(value, f"{param}.{kind}")


def _text(value: Any, param: str) -> TextBlock:
    return TextBlock(check.string(value, param))


def _image(value: Any, param: str) -> ImageBlock:
    data = check.obj(value, param)
    fmt = check.required(data, "format", f"{param}.format")
    if fmt not in IMAGE_FORMATS:
        raise check.fail(f"must be one of {', '.join(IMAGE_FORMATS)}, got {check.shown(fmt)}",
                         f"{param}.format")
    kind, source = check.union(check.required(data, "source", f"{param}.source"),
                               f"{param}.source", ("bytes", "s3Location"))
    if kind != "bytes":
        # Only Bedrock itself could read the object; no other upstream can.
        raise check.fail("s3Location image sources are not supported by this gateway; "
                         "send the image bytes", f"{param}.source")
    payload = check.string(source, f"{param}.source.bytes", nonempty=True)
    return ImageBlock(media_type=f"image/{fmt}", data=payload)


def _document(value: Any, param: str) -> DocumentBlock:
    data = check.obj(value, param)
    fmt = check.required(data, "format", f"{param}.format")
    if fmt not in DOCUMENT_MEDIA:
        raise check.fail(f"must be one of {', '.join(DOCUMENT_MEDIA)}, got {fmt!r}",
                         f"{param}.format")
    citations = data.get("citations")
    if citations is not None and check.obj(citations, f"{param}.citations").get("enabled"):
        raise check.fail("citations are not supported by this gateway; send the document "
                         "with citations off", f"{param}.citations.enabled")
    context = data.get("context")
    doc = DocumentBlock(DOCUMENT_MEDIA[fmt], name=check.string(
        check.required(data, "name", f"{param}.name"), f"{param}.name", nonempty=True),
        context=None if context is None else check.string(context, f"{param}.context"))
    p = f"{param}.source"
    kind, source = check.union(check.required(data, "source", p), p,
                               ("bytes", "text", "content", "s3Location"))
    if kind == "s3Location":
        raise check.fail("s3Location document sources are not supported by this gateway; "
                         "send the document bytes", p)
    if kind == "text":
        doc.text = check.string(source, f"{p}.text")
    elif kind == "content":
        parts = [check.obj(item, f"{p}.content.{i}") for i, item in
                 enumerate(check.array(source, f"{p}.content"))]
        doc.text = "\n\n".join(check.string(check.required(part, "text", f"{p}.content.{i}"),
                                             f"{p}.content.{i}.text")
                                for i, part in enumerate(parts))
    else:
        payload = check.string(source, f"{p}.bytes", nonempty=True)
        if doc.media_type.startswith("text/"):
            doc.text = _utf8(payload, f"{p}.bytes")
        else:
            doc.data = payload
    return doc


def _utf8(payload: str, param: str) -> str:
    try:
        return base64.b64decode(payload, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise check.fail("a text document's bytes must be UTF-8 text in base64", param) from None


def _tool_use(value: Any, param: str) -> ToolUseBlock:
    data = check.obj(value, param)
    return ToolUseBlock(
        id=check.string(check.required(data, "toolUseId", f"{param}.toolUseId"),
                        f"{param}.toolUseId", nonempty=True),
        name=check.string(check.required(data, "name", f"{param}.name"), f"{param}.name",
                          nonempty=True),
        input=check.shallow(check.obj(check.required(data, "input", f"{param}.input"),
                                      f"{param}.input"), f"{param}.input"),
    )


def _tool_result(value: Any, param: str) -> ToolResultBlock:
    data = check.obj(value, param)
    p_id = f"{param}.toolUseId"
    result = ToolResultBlock(check.string(check.required(data, "toolUseId", p_id), p_id,
                                          nonempty=True))
    status = data.get("status")
    if status not in (None, "success", "error"):
        raise check.fail(f"must be success or error, got {check.shown(status)}",
                         f"{param}.status")
    result.is_error = status == "error"
    p = f"{param}.content"
    for i, item in enumerate(check.array(check.required(data, "content", p), p)):
        result.content.append(_result_part(item, f"{p}.{i}"))
    return result


def _result_part(raw: Any, param: str) -> TextBlock | ImageBlock:
    kind, value = check.union(raw, param, _RESULT_KNOWN)
    if kind == "text":
        return _text(value, f"{param}.text")
    if kind == "json":
        # Canonical results are text or images; JSON is carried as its compact text.
        return TextBlock(orjson.dumps(check.shallow(value, f"{param}.json")).decode())
    if kind == "image":
        return _image(value, f"{param}.image")
    raise check.fail(f"{kind} tool results are not supported by this gateway", param)


def _reasoning(value: Any, param: str) -> ThinkingBlock | None:
    kind, inner = check.union(value, param, ("reasoningText", "redactedContent"))
    if kind != "reasoningText":
        return None  # encrypted reasoning: no other upstream could read it anyway
    data = check.obj(inner, f"{param}.reasoningText")
    text = check.string(check.required(data, "text", f"{param}.reasoningText.text"),
                        f"{param}.reasoningText.text")
    signature = data.get("signature")
    if signature is not None:
        check.string(signature, f"{param}.reasoningText.signature")
    return ThinkingBlock(text, signature)


def _guard(value: Any, param: str) -> TextBlock:
    # Guardrail-marked text is still text for the model; only Bedrock guardrails read it.
    data = check.obj(value, param)
    inner = check.obj(check.required(data, "text", f"{param}.text"), f"{param}.text")
    return TextBlock(check.string(check.required(inner, "text", f"{param}.text.text"),
                                  f"{param}.text.text"))


def _cache_point(value: Any, param: str) -> None:
    return None  # a caching hint; canonical requests carry none


_DECODERS = {"text": _text, "image": _image, "document": _document, "toolUse": _tool_use,
             "toolResult": _tool_result, "reasoningContent": _reasoning,
             "guardContent": _guard, "cachePoint": _cache_point}


# ---- canonical -> wire ------------------------------------------------------------------


def encode_block(block: Block) -> dict | None:
    """Wire JSON for one block, or None for a block Bedrock would reject and that carries
    nothing it needs (blank text, unsigned reasoning another provider made)."""
    if isinstance(block, TextBlock):
        return {"text": block.text} if block.text else None
    if isinstance(block, ImageBlock):
        return {"image": encode_image(block)}
    if isinstance(block, ToolUseBlock):
        return {"toolUse": {"toolUseId": block.id, "name": block.name, "input": block.input}}
    if isinstance(block, ToolResultBlock):
        return {"toolResult": _encode_tool_result(block)}
    if isinstance(block, ThinkingBlock):
        if not block.signature:
            return None
        return {"reasoningContent": {"reasoningText": {"text": block.text,
                                                       "signature": block.signature}}}
    if isinstance(block, DocumentBlock):
        return {"document": encode_document(block)}
    raise InvalidRequest(f"cannot send a {type(block).__name__} to a Bedrock upstream")


def encode_document(block: DocumentBlock) -> dict:
    fmt = _DOCUMENT_FORMAT.get(block.media_type)
    if fmt is None:
        raise InvalidRequest(f"Bedrock cannot read documents of type {block.media_type}",
                             param="messages")
    payload = block.data
    if payload is None:
        payload = base64.b64encode((block.text or "").encode("utf-8")).decode("ascii")
    out: dict[str, Any] = {"format": fmt, "name": document_name(block.name),
                           "source": {"bytes": payload}}
    if block.context:
        out["context"] = block.context
    return out


def document_name(name: str | None) -> str:
    """Converse takes letters, digits, single spaces, hyphens, parentheses and brackets."""
    cleaned = " ".join(_NAME_NOT_ALLOWED.sub("-", name or "").split())[:200]
    return cleaned or "document"


def encode_image(block: ImageBlock) -> dict:
    if block.data is None:
        raise InvalidRequest("Bedrock takes images as inline bytes only; image URLs are not "
                             "supported by this deployment", param="messages")
    fmt = _MEDIA_TO_FORMAT.get((block.media_type or "").lower())
    if fmt is None:
        raise InvalidRequest(f"unsupported image media type {block.media_type!r} for Bedrock; "
                             f"expected one of {', '.join(_MEDIA_TO_FORMAT)}", param="messages")
    return {"format": fmt, "source": {"bytes": block.data}}


def _encode_tool_result(block: ToolResultBlock) -> dict:
    content: list[dict] = []
    for part in block.content:
        if isinstance(part, ImageBlock):
            content.append({"image": encode_image(part)})
        elif part.text:
            content.append({"text": part.text})
    out: dict[str, Any] = {"toolUseId": block.tool_use_id, "content": content}
    if block.is_error:
        # Only "error" is sent: status is supported by Claude and Nova alone, and leaving
        # it out means success everywhere.
        out["status"] = "error"
    return out
