"""Gemini ``contents`` (turns of parts) <-> canonical messages of blocks.

Gemini tool calls have no required id: a ``functionResponse`` answers a ``functionCall`` by
name (and by ``id`` when the model gave one). Canonical blocks need ids, so calls without
one get a synthetic id (``SYNTHETIC_PREFIX``) that is never sent back to Gemini, and
responses are matched to the calls of the previous model turn. Going out, a tool result's
function *name* is recovered from the tool call with the same id earlier in the
conversation.

Thought signatures: Gemini 3 rejects a follow-up turn whose function calls lost the
signature Gemini attached to them. A signature on a function call part travels as a
text-less ``ThinkingBlock`` just before the ``ToolUseBlock`` and is re-attached on the way
out; a call with no known signature gets Google's documented placeholder. Signatures on
plain text parts are optional for Gemini and are not kept.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from modelmart.core.ids import new_id
from modelmart.core.types import (
    Block, DocumentBlock, ImageBlock, Message, TextBlock, ThinkingBlock, ToolResultBlock,
    ToolUseBlock,
)

from ._check import array, fail, field, obj, one_of, string

SYNTHETIC_PREFIX = "call_gm_"
# Documented by Google for history that did not come from Gemini ("skip_thought_signature_
# validator"); accepted in place of a real signature on a function call part.
PLACEHOLDER_SIGNATURE = "skip_thought_signature_validator"
_ROLES = ("user", "model", "function")


def synthetic_id() -> str:
    return new_id(SYNTHETIC_PREFIX)


def wire_id(block_id: str) -> str | None:
    """The id to send to Gemini: none for ids we made up."""
    return None if not block_id or block_id.startswith(SYNTHETIC_PREFIX) else block_id


# ---- decode (client -> canonical) -------------------------------------------------------


class _Turns:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        # (name, id) of the last model turn's calls not yet answered
        self.pending: list[tuple[str, str]] = []

    def add(self, role: str, blocks: list[Block]) -> None:
        # Canonical turns alternate; consecutive Gemini turns of one role join.
        if self.messages and self.messages[-1].role == role:
            self.messages[-1].content.extend(blocks)
        else:
            self.messages.append(Message(role, blocks))  # type: ignore[arg-type]

    def answer(self, name: str, given_id: str | None, param: str) -> str:
        for k, (n, i) in enumerate(self.pending):
            if (given_id and i == given_id) or (not given_id and n == name):
                del self.pending[k]
                return i
        raise fail(f"functionResponse for {name!r} does not answer a functionCall of the "
                   "preceding model turn", param)


def decode_contents(raw: Any) -> list[Message]:
    turns = _Turns()
    for i, item in enumerate(array(raw, "contents", nonempty=True)):
        p = f"contents[{i}]"
        content = obj(item, p)
        role = one_of(content.get("role") or "user", f"{p}.role", _ROLES)
        parts = array(field(content, "parts"), f"{p}.parts", nonempty=True)
        if role == "model":
            turns.pending = []
            turns.add("assistant", _model_blocks(parts, turns, f"{p}.parts"))
        else:
            turns.add("user", [_user_block(obj(part, f"{p}.parts[{j}]"), turns, f"{p}.parts[{j}]")
                               for j, part in enumerate(parts)])
    return turns.messages


def _model_blocks(parts: list, turns: _Turns, param: str) -> list[Block]:
    blocks: list[Block] = []
    for j, raw in enumerate(parts):
        p = f"{param}[{j}]"
        part = obj(raw, p)
        signature = field(part, "thoughtSignature")
        call = field(part, "functionCall")
        if call is not None:
            if signature:
                blocks.append(ThinkingBlock("", signature=signature))
            block = decode_call(obj(call, f"{p}.functionCall"), f"{p}.functionCall")
            turns.pending.append((block.name, block.id))
            blocks.append(block)
        elif isinstance(part.get("text"), str):
            blocks.append(ThinkingBlock(part["text"], signature=signature or None)
                          if part.get("thought") else TextBlock(part["text"]))
        else:
            raise fail(f"unsupported part in a model turn (keys: {', '.join(part) or 'none'}); "
                       "only text, thought and functionCall parts are supported", p)
    return blocks


def decode_call(call: dict, param: str) -> ToolUseBlock:
    name = string(call.get("name"), f"{param}.name", nonempty=True)
    args = call.get("args")
    args = {} if args is None else obj(args, f"{param}.args")
    call_id = call.get("id")
    return ToolUseBlock(call_id if isinstance(call_id, str) and call_id else synthetic_id(), name, args)


def _user_block(part: dict, turns: _Turns, p: str) -> Block:
    if isinstance(part.get("text"), str):
        return TextBlock(part["text"])
    for key, decode in (("inlineData", _inline), ("fileData", _file)):
        value = field(part, key)
        if value is not None:
            return decode(obj(value, f"{p}.{key}"), f"{p}.{key}")
    response = field(part, "functionResponse")
    if response is not None:
        return _tool_result(obj(response, f"{p}.functionResponse"), turns, f"{p}.functionResponse")
    raise fail(f"unsupported part (keys: {', '.join(part) or 'none'}); supported: text, "
               "inlineData (images, PDF and text documents), fileData images, "
               "functionResponse", p)


PDF = "application/pdf"
TEXT_DOCUMENTS = ("text/plain", "text/markdown", "text/csv", "text/html")


def _image_type(spec: dict, param: str, documents: bool = False) -> str:
    mime = string(field(spec, "mimeType"), f"{param}.mimeType", nonempty=True)
    if not mime.startswith("image/") and not (documents and mime in (PDF, *TEXT_DOCUMENTS)):
        allowed = "image, PDF or text media" if documents else "only image media"
        raise fail(f"{allowed} is supported, got {mime!r}", f"{param}.mimeType")
    return mime


def _inline(spec: dict, param: str) -> ImageBlock | DocumentBlock:
    mime = _image_type(spec, param, documents=True)
    data = string(spec.get("data"), f"{param}.data", nonempty=True)
    # Protobuf's JSON form of bytes accepts URL-safe base64, and google-genai sends it; every
    # other dialect (data URLs, Anthropic, Bedrock) wants the standard alphabet.
    if "-" in data or "_" in data:
        data = data.translate(_URLSAFE)
    if mime == PDF:
        return DocumentBlock(PDF, data=data)
    if mime in TEXT_DOCUMENTS:
        try:
            text = base64.b64decode(data, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise fail("a text document's data must be UTF-8 text in base64",
                       f"{param}.data") from None
        return DocumentBlock(mime, text=text)
    return ImageBlock(media_type=mime, data=data)


_URLSAFE = str.maketrans("-_", "+/")


def _file(spec: dict, param: str) -> ImageBlock:
    mime = _image_type(spec, param)
    uri = string(field(spec, "fileUri"), f"{param}.fileUri", nonempty=True)
    if not uri.startswith(("http://", "https://")):
        raise fail("only http(s) file URIs are supported", f"{param}.fileUri")
    return ImageBlock(media_type=mime, url=uri)


def _tool_result(spec: dict, turns: _Turns, param: str) -> ToolResultBlock:
    name = string(spec.get("name"), f"{param}.name", nonempty=True)
    given = spec.get("id") if isinstance(spec.get("id"), str) else None
    call_id = turns.answer(name, given, param)
    response = spec.get("response")
    response = {} if response is None else obj(response, f"{param}.response")
    # Google's convention: {"output": ...} for a result, {"error": ...} for a failure.
    if set(response) == {"error"}:
        return ToolResultBlock(call_id, [TextBlock(_as_text(response["error"]))], is_error=True)
    if set(response) == {"output"}:
        return ToolResultBlock(call_id, [TextBlock(_as_text(response["output"]))])
    return ToolResultBlock(call_id, [TextBlock(_as_text(response))])


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


# ---- encode (canonical -> Gemini) -------------------------------------------------------


def encode_contents(messages: list[Message]) -> list[dict[str, Any]]:
    names: dict[str, str] = {}  # tool_use_id -> function name, from earlier model turns
    out = []
    for msg in messages:
        if msg.role == "assistant":
            parts = model_parts(msg.content, names=names)
        else:
            parts = _user_parts(msg.content, names)
        if parts:  # Gemini refuses a turn with no parts
            out.append({"role": "model" if msg.role == "assistant" else "user", "parts": parts})
    return out


def model_parts(blocks: list[Block], *, names: dict[str, str] | None = None,
                placeholder: bool = True) -> list[dict[str, Any]]:
    """Assistant blocks -> model parts. ``placeholder``: sign the turn's first function
    call with the placeholder when no real signature came with it (requests only)."""
    parts: list[dict[str, Any]] = []
    signature: str | None = None
    signed = False
    for block in blocks:
        if isinstance(block, ThinkingBlock):
            # Thought text is a summary Gemini neither needs nor wants back; only a
            # signature for the next part matters.
            signature = block.signature if not block.text else signature
        elif isinstance(block, TextBlock):
            parts.append({"text": block.text})
        elif isinstance(block, ToolUseBlock):
            if names is not None:
                names[block.id] = block.name
            if signature is None and placeholder and not signed:
                signature = PLACEHOLDER_SIGNATURE
            parts.append(call_part(block, signature))
            signed, signature = True, None
    return parts


def call_part(block: ToolUseBlock, signature: str | None) -> dict[str, Any]:
    call: dict[str, Any] = {"name": block.name, "args": block.input}
    if (wid := wire_id(block.id)) is not None:
        call["id"] = wid
    part: dict[str, Any] = {"functionCall": call}
    if signature:
        part["thoughtSignature"] = signature
    return part


def image_part(img: ImageBlock) -> dict[str, Any]:
    if img.url:
        return {"fileData": {"mimeType": img.media_type or "image/jpeg", "fileUri": img.url}}
    return {"inlineData": {"mimeType": img.media_type or "image/png", "data": img.data}}


def document_part(doc: DocumentBlock) -> dict[str, Any]:
    """A PDF as inline data, Gemini's own way to read one; a text document as text (Gemini
    has no title for inline data, and reads the text the same)."""
    if doc.data is None:
        return {"text": doc.as_text()}
    if doc.media_type != PDF:
        raise fail(f"Gemini reads PDF and text documents, not {doc.media_type}", "messages")
    return {"inlineData": {"mimeType": PDF, "data": doc.data}}


def _user_parts(blocks: list[Block], names: dict[str, str]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    rest: list[dict[str, Any]] = []
    for block in blocks:
        if isinstance(block, ToolResultBlock):
            results.append(_response_part(block, names))
            rest.extend(image_part(c) for c in block.content if isinstance(c, ImageBlock))
        elif isinstance(block, TextBlock):
            rest.append({"text": block.text})
        elif isinstance(block, ImageBlock):
            rest.append(image_part(block))
        elif isinstance(block, DocumentBlock):
            rest.append(document_part(block))
    # Function responses first: Gemini wants them to follow the calls directly.
    return results + rest


def _response_part(block: ToolResultBlock, names: dict[str, str]) -> dict[str, Any]:
    name = names.get(block.tool_use_id)
    if name is None:
        raise fail(f"tool result {block.tool_use_id!r} answers no earlier tool call; Gemini "
                   "needs the function name", "messages")
    text = "\n".join(c.text for c in block.content if isinstance(c, TextBlock))
    response: dict[str, Any] = {"functionResponse": {
        "name": name, "response": {"error" if block.is_error else "output": text}}}
    if (wid := wire_id(block.tool_use_id)) is not None:
        response["functionResponse"]["id"] = wid
    return response
