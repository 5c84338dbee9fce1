"""The canonical request, response and stream events every dialect translates to and from.

The shape follows Anthropic Messages / Bedrock Converse: messages of typed content blocks.
Usage follows Anthropic too: ``input_tokens`` counts only uncached input, cache reads and
writes are counted apart, so no token is ever priced twice. ``output_tokens`` includes
``reasoning_tokens`` (which is a breakdown, as in OpenAI's usage).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Union

Role = Literal["user", "assistant"]
StopReason = Literal[
    "end_turn", "max_tokens", "stop_sequence", "tool_use", "content_filter", "error"
]


@dataclass(slots=True)
class TextBlock:
    text: str
    type: Literal["text"] = "text"


@dataclass(slots=True)
class ImageBlock:
    """An image given inline (``data``: base64 text, as every dialect carries it) or by
    ``url`` (http(s) only; data URLs are split into ``media_type`` and ``data``)."""

    media_type: str | None = None
    data: str | None = None
    url: str | None = None
    detail: str | None = None
    type: Literal["image"] = "image"


@dataclass(slots=True)
class ToolUseBlock:
    """A tool call made by the assistant. ``input`` is the parsed JSON arguments object."""

    id: str
    name: str
    input: dict[str, Any]
    type: Literal["tool_use"] = "tool_use"


@dataclass(slots=True)
class ToolResultBlock:
    """The result of a tool call, given back by the user turn."""

    tool_use_id: str
    content: list[TextBlock | ImageBlock] = field(default_factory=list)
    is_error: bool = False
    type: Literal["tool_result"] = "tool_result"


@dataclass(slots=True)
class ThinkingBlock:
    text: str
    signature: str | None = None
    type: Literal["thinking"] = "thinking"


@dataclass(slots=True)
class DocumentBlock:
    """A document given to the model: text (``text``; ``media_type`` text/plain,
    text/markdown, text/csv or text/html) or a file as base64 (``data``: a PDF, or an
    office file that only Bedrock reads). ``name`` is its title. No citations."""

    media_type: str
    text: str | None = None
    data: str | None = None
    name: str | None = None
    context: str | None = None
    type: Literal["document"] = "document"

    def as_text(self) -> str:
        """A text document for upstreams without document blocks: its title and context
        on lines of their own, then the text."""
        head = [f"Document: {self.name}"] if self.name else []
        if self.context:
            head.append(self.context)
        return "\n".join([*head, "", self.text or ""]) if head else (self.text or "")


Block = Union[TextBlock, ImageBlock, ToolUseBlock, ToolResultBlock, ThinkingBlock, DocumentBlock]


@dataclass(slots=True)
class Message:
    role: Role
    content: list[Block]


@dataclass(slots=True)
class Tool:
    name: str
    description: str | None = None
    input_schema: dict[str, Any] = field(default_factory=lambda: {"type": "object"})


@dataclass(slots=True)
class ToolChoice:
    """``auto``: model decides; ``any``: must call some tool; ``tool``: must call ``name``;
    ``none``: must not call tools."""

    type: Literal["auto", "any", "tool", "none"] = "auto"
    name: str | None = None
    disable_parallel: bool = False


@dataclass(slots=True)
class ResponseFormat:
    type: Literal["text", "json_object", "json_schema"] = "text"
    schema: dict[str, Any] | None = None
    name: str | None = None
    strict: bool | None = None


@dataclass(slots=True)
class Request:
    model: str
    messages: list[Message]
    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    response_format: ResponseFormat | None = None
    stream: bool = False
    user: str | None = None
    # Extra, provider-specific fields the client sent. They are passed through unchanged
    # only to upstreams that speak the client's dialect (``source``): an OpenAI-only field
    # would be an error at Anthropic.
    extra: dict[str, Any] = field(default_factory=dict)
    # The dialect the client spoke ("openai", "anthropic", ...); set by the API surface.
    source: str = ""

    def needs_images(self) -> bool:
        for m in self.messages:
            for b in m.content:
                if isinstance(b, ImageBlock):
                    return True
                if isinstance(b, ToolResultBlock) and any(
                    isinstance(c, ImageBlock) for c in b.content
                ):
                    return True
        return False

    def binary_documents(self) -> set[str]:
        """Media types of the documents given as files (PDFs...), which only some upstreams
        read (``routing/capability.py``)."""
        found: set[str] = set()
        for m in self.messages:
            for b in m.content:
                if type(b) is DocumentBlock and b.data is not None:
                    found.add(b.media_type)
        return found


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_input_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    def add(self, other: "Usage") -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cache_read_tokens += other.cache_read_tokens
        self.cache_write_tokens += other.cache_write_tokens
        self.reasoning_tokens += other.reasoning_tokens


@dataclass(slots=True)
class Response:
    id: str
    model: str
    content: list[Block]
    stop_reason: StopReason = "end_turn"
    stop_sequence: str | None = None
    usage: Usage = field(default_factory=Usage)
    created: int = 0
    # OpenAI's ``choices[0].logprobs`` as an OpenAI-compatible upstream sent it, for an
    # OpenAI client that asked for them (``logprobs`` is refused where they cannot come).
    logprobs: Any = None


# ---- stream events -------------------------------------------------------------------
# A stream is: MessageStart, then for each block BlockStart, deltas, BlockStop, then
# MessageEnd (stop reason and final usage). Block indexes count from 0 in order.


@dataclass(slots=True)
class MessageStart:
    id: str
    model: str
    usage: Usage = field(default_factory=Usage)
    created: int = 0


@dataclass(slots=True)
class BlockStart:
    index: int
    block: TextBlock | ToolUseBlock | ThinkingBlock  # empty text / input {} at start


@dataclass(slots=True)
class TextDelta:
    index: int
    text: str


@dataclass(slots=True)
class ToolArgsDelta:
    """A fragment of the tool call's arguments as JSON text; fragments concatenate."""

    index: int
    partial_json: str


@dataclass(slots=True)
class ThinkingDelta:
    index: int
    text: str = ""
    signature: str | None = None


@dataclass(slots=True)
class BlockStop:
    index: int


@dataclass(slots=True)
class MessageEnd:
    stop_reason: StopReason
    usage: Usage
    stop_sequence: str | None = None


StreamEvent = Union[
    MessageStart, BlockStart, TextDelta, ToolArgsDelta, ThinkingDelta, BlockStop, MessageEnd,
]
