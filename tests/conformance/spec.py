"""The neutral vocabulary of the conformance matrix: conversations, tools and results that
every client adapter renders in its own SDK's request shape and reads back from its SDK's
response shape. Nothing here knows a wire format."""

from __future__ import annotations

import base64
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Union


@dataclass(frozen=True)
class UserText:
    text: str


@dataclass(frozen=True)
class UserImage:
    text: str
    media_type: str
    data_b64: str

    @property
    def raw(self) -> bytes:
        return base64.b64decode(self.data_b64)


@dataclass(frozen=True)
class AssistantToolCall:
    id: str
    name: str
    arguments: dict


@dataclass(frozen=True)
class ToolResult:
    id: str
    name: str  # Gemini answers a call by the function's name, not its id
    content: str


Turn = Union[UserText, UserImage, AssistantToolCall, ToolResult]


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    schema: dict


# None: the SDK's default (auto); "any": some tool must be called; ("tool", name): that one.
ToolChoice = Union[None, str, tuple]


@dataclass
class Call:
    name: str
    arguments: dict
    id: str


@dataclass
class Result:
    text: str
    tool_calls: list[Call]
    stop: str  # the dialect's own word (finish_reason, stop_reason, status...)
    input_tokens: int
    output_tokens: int
    extra: dict[str, Any] = field(default_factory=dict)


# ---- fixtures of the conversation -------------------------------------------------------

WEATHER = ToolSpec("get_weather", "Current weather for a city", {
    "type": "object",
    "properties": {
        "city": {"type": "string", "enum": ["Paris", "Zürich", "Tōkyō", "Reykjavík"]},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
})
TRIP = ToolSpec("book_trip", "Book a trip with several stops", {
    "type": "object",
    "properties": {
        "traveller": {"type": "object", "properties": {"name": {"type": "string"},
                                                       "age": {"type": "integer"}}},
        "stops": {"type": "array", "items": {"type": "object", "properties": {
            "city": {"type": "string"}, "nights": {"type": "integer"}}}},
        "note": {"type": "string"},
    },
    "required": ["traveller", "stops"],
})
TOOLS = [WEATHER, TRIP]


def _png_1x1() -> str:
    """A real one-pixel red PNG, as base64."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    raw += chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b"")
    return base64.b64encode(raw).decode()


PNG_B64 = _png_1x1()
TOOL_USE_ID = "toolu_01Conformance-Call_9"


def conversation_text(text: str) -> list[Turn]:
    return [UserText(text)]


def conversation_image() -> list[Turn]:
    return [UserImage("What is in this picture?", "image/png", PNG_B64)]


def conversation_tool_result() -> list[Turn]:
    return [UserText("What is the weather in Paris?"),
            AssistantToolCall(TOOL_USE_ID, "get_weather", {"city": "Paris", "unit": "celsius"}),
            ToolResult(TOOL_USE_ID, "get_weather", "sunny, 21 °C, light breeze")]


def matches_schema(value: Any, schema: dict) -> bool:
    """A small JSON-schema check, enough for the tools above: type, enum, required,
    properties and items."""
    kind = schema.get("type")
    if "enum" in schema and value not in schema["enum"]:
        return False
    if kind == "object":
        if not isinstance(value, dict):
            return False
        if any(k not in value for k in schema.get("required", [])):
            return False
        props = schema.get("properties", {})
        return all(matches_schema(v, props[k]) for k, v in value.items() if k in props)
    if kind == "array":
        return isinstance(value, list) and all(matches_schema(v, schema.get("items", {}))
                                               for v in value)
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    return True
