"""One adapter per client surface, each driving its official SDK over HTTP, all with the same
small interface:

``complete(model, turns, tools=, tool_choice=, stream=, max_tokens=, temperature=) -> Result``
renders the neutral conversation (``spec``) in the SDK's own request shape and reads the
answer back; streamed tool arguments are reassembled from the raw argument deltas, never
from the SDK's own accumulation, so a broken delta sequence fails the test.

Errors are the SDK's own exceptions: ``error_class(status)`` is the class a client of that
dialect expects for an HTTP status, ``status_of`` / ``retry_after_of`` / ``code_of`` read
them, ``MIDSTREAM_ERROR`` is what a stream that fails after its first byte raises.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import boto3
import botocore.exceptions
import openai
from botocore.config import Config
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from .spec import (AssistantToolCall, Call, Result, ToolChoice, ToolResult, ToolSpec, Turn,
                   UserImage, UserText)


def _args(text: str) -> dict:
    return json.loads(text) if text else {}


class _OpenAIErrors:
    """The openai SDK's status exceptions (Chat Completions and Responses alike)."""

    _BY_STATUS = {400: openai.BadRequestError, 401: openai.AuthenticationError,
                  403: openai.PermissionDeniedError, 404: openai.NotFoundError,
                  429: openai.RateLimitError}

    def error_class(self, status: int) -> type[BaseException]:
        if status >= 500:
            return openai.InternalServerError
        return self._BY_STATUS.get(status, openai.APIStatusError)

    def status_of(self, exc: Any) -> int:
        return exc.status_code

    def retry_after_of(self, exc: Any) -> str | None:
        return exc.response.headers.get("retry-after")

    def code_of(self, exc: Any) -> str | None:
        body = exc.body if isinstance(exc.body, dict) else {}
        return body.get("type")

    def message_of(self, exc: Any) -> str:
        return str(exc)


# ---- OpenAI Chat Completions ------------------------------------------------------------


class OpenAIChatClient(_OpenAIErrors):
    name = "openai-chat"
    STOP_END, STOP_TOOL, STOP_MAX = "stop", "tool_calls", "length"
    MIDSTREAM_ERROR = openai.APIError

    def __init__(self, base_url: str, key: str) -> None:
        self.sdk = openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0,
                                 timeout=60)

    @staticmethod
    def render(turns: list[Turn]) -> list[dict]:
        out: list[dict] = []
        for t in turns:
            if isinstance(t, UserText):
                out.append({"role": "user", "content": t.text})
            elif isinstance(t, UserImage):
                out.append({"role": "user", "content": [
                    {"type": "text", "text": t.text},
                    {"type": "image_url",
                     "image_url": {"url": f"data:{t.media_type};base64,{t.data_b64}"}}]})
            elif isinstance(t, AssistantToolCall):
                out.append({"role": "assistant", "content": None, "tool_calls": [
                    {"id": t.id, "type": "function",
                     "function": {"name": t.name, "arguments": json.dumps(t.arguments)}}]})
            elif isinstance(t, ToolResult):
                out.append({"role": "tool", "tool_call_id": t.id, "content": t.content})
        return out

    @staticmethod
    def render_tools(tools: list[ToolSpec]) -> list[dict]:
        return [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                  "parameters": t.schema}} for t in tools]

    @staticmethod
    def render_choice(choice: ToolChoice) -> Any:
        if choice == "any":
            return "required"
        return {"type": "function", "function": {"name": choice[1]}}

    def complete(self, model: str, turns: list[Turn], *, tools: list[ToolSpec] | None = None,
                 tool_choice: ToolChoice = None, stream: bool = False, max_tokens: int = 64,
                 temperature: float | None = None) -> Result:
        kwargs: dict[str, Any] = {"model": model, "messages": self.render(turns),
                                  "max_tokens": max_tokens}
        if tools:
            kwargs["tools"] = self.render_tools(tools)
        if tool_choice is not None:
            kwargs["tool_choice"] = self.render_choice(tool_choice)
        if temperature is not None:
            kwargs["temperature"] = temperature
        if not stream:
            resp = self.sdk.chat.completions.create(**kwargs)
            choice = resp.choices[0]
            calls = [Call(c.function.name, _args(c.function.arguments), c.id)
                     for c in choice.message.tool_calls or []]
            return Result(choice.message.content or "", calls, choice.finish_reason,
                          resp.usage.prompt_tokens, resp.usage.completion_tokens)
        text, slots, finish, usage = "", {}, None, None
        for chunk in self.sdk.chat.completions.create(
                stream=True, stream_options={"include_usage": True}, **kwargs):
            usage = chunk.usage or usage
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            finish = choice.finish_reason or finish
            text += choice.delta.content or ""
            for tc in choice.delta.tool_calls or []:
                slot = slots.setdefault(tc.index, {"id": None, "name": None, "args": ""})
                slot["id"] = tc.id or slot["id"]
                if tc.function is not None:
                    slot["name"] = tc.function.name or slot["name"]
                    slot["args"] += tc.function.arguments or ""
        calls = [Call(s["name"], _args(s["args"]), s["id"]) for _, s in sorted(slots.items())]
        assert usage is not None, "no usage chunk although include_usage was asked for"
        return Result(text, calls, finish, usage.prompt_tokens, usage.completion_tokens)


# ---- Anthropic Messages -----------------------------------------------------------------


class AnthropicClient:
    name = "anthropic-messages"
    STOP_END, STOP_TOOL, STOP_MAX = "end_turn", "tool_use", "max_tokens"
    MIDSTREAM_ERROR = anthropic.APIError

    _BY_STATUS = {400: anthropic.BadRequestError, 401: anthropic.AuthenticationError,
                  403: anthropic.PermissionDeniedError, 404: anthropic.NotFoundError,
                  429: anthropic.RateLimitError}

    def __init__(self, base_url: str, key: str) -> None:
        self.sdk = anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0, timeout=60)

    @staticmethod
    def render(turns: list[Turn]) -> list[dict]:
        out: list[dict] = []
        for t in turns:
            if isinstance(t, UserText):
                out.append({"role": "user", "content": t.text})
            elif isinstance(t, UserImage):
                out.append({"role": "user", "content": [
                    {"type": "text", "text": t.text},
                    {"type": "image", "source": {"type": "base64", "media_type": t.media_type,
                                                 "data": t.data_b64}}]})
            elif isinstance(t, AssistantToolCall):
                out.append({"role": "assistant", "content": [
                    {"type": "tool_use", "id": t.id, "name": t.name, "input": t.arguments}]})
            elif isinstance(t, ToolResult):
                out.append({"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": t.id, "content": t.content}]})
        return out

    @staticmethod
    def render_tools(tools: list[ToolSpec]) -> list[dict]:
        return [{"name": t.name, "description": t.description, "input_schema": t.schema}
                for t in tools]

    @staticmethod
    def render_choice(choice: ToolChoice) -> dict:
        return {"type": "any"} if choice == "any" else {"type": "tool", "name": choice[1]}

    def complete(self, model: str, turns: list[Turn], *, tools: list[ToolSpec] | None = None,
                 tool_choice: ToolChoice = None, stream: bool = False, max_tokens: int = 64,
                 temperature: float | None = None) -> Result:
        kwargs: dict[str, Any] = {"model": model, "messages": self.render(turns),
                                  "max_tokens": max_tokens}
        if tools:
            kwargs["tools"] = self.render_tools(tools)
        if tool_choice is not None:
            kwargs["tool_choice"] = self.render_choice(tool_choice)
        if temperature is not None:
            # anthropic>=2.14 takes no sampling arguments; the wire still carries them.
            kwargs["extra_body"] = {"temperature": temperature}
        if not stream:
            msg = self.sdk.messages.create(**kwargs)
            text = "".join(b.text for b in msg.content if b.type == "text")
            calls = [Call(b.name, b.input, b.id) for b in msg.content if b.type == "tool_use"]
            return Result(text, calls, msg.stop_reason, msg.usage.input_tokens,
                          msg.usage.output_tokens)
        text, blocks = "", {}
        with self.sdk.messages.stream(**kwargs) as events:
            for event in events:
                if event.type == "content_block_start" and event.content_block.type == "tool_use":
                    block = event.content_block
                    blocks[event.index] = {"id": block.id, "name": block.name, "args": ""}
                elif event.type == "content_block_delta":
                    if event.delta.type == "text_delta":
                        text += event.delta.text
                    elif event.delta.type == "input_json_delta":
                        blocks[event.index]["args"] += event.delta.partial_json
            final = events.get_final_message()
        calls = [Call(b["name"], _args(b["args"]), b["id"]) for _, b in sorted(blocks.items())]
        return Result(text, calls, final.stop_reason, final.usage.input_tokens,
                      final.usage.output_tokens)

    def error_class(self, status: int) -> type[BaseException]:
        if status >= 500:
            return anthropic.InternalServerError
        return self._BY_STATUS.get(status, anthropic.APIStatusError)

    def status_of(self, exc: Any) -> int:
        return exc.status_code

    def retry_after_of(self, exc: Any) -> str | None:
        return exc.response.headers.get("retry-after")

    def code_of(self, exc: Any) -> str | None:
        body = exc.body if isinstance(exc.body, dict) else {}
        return (body.get("error") or {}).get("type")

    def message_of(self, exc: Any) -> str:
        return str(exc)


# ---- OpenAI Responses -------------------------------------------------------------------


class ResponsesStreamFailed(Exception):
    """A Responses stream delivered an ``error`` event and ``get_final_response()`` then
    refused to produce a response (the openai SDK raises nothing on the event itself)."""

    def __init__(self, code: str | None, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class ResponsesClient(_OpenAIErrors):
    name = "openai-responses"
    # The Responses API has no stop reason: a finished response is "completed" whether it
    # ends in text or in function calls, "incomplete" with a reason when cut short.
    STOP_END, STOP_TOOL, STOP_MAX = "completed", "completed", "incomplete:max_output_tokens"
    MIDSTREAM_ERROR = ResponsesStreamFailed

    def __init__(self, base_url: str, key: str) -> None:
        self.sdk = openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0,
                                 timeout=60)

    @staticmethod
    def render(turns: list[Turn]) -> list[dict]:
        out: list[dict] = []
        for t in turns:
            if isinstance(t, UserText):
                out.append({"role": "user", "content": t.text})
            elif isinstance(t, UserImage):
                out.append({"role": "user", "content": [
                    {"type": "input_text", "text": t.text},
                    {"type": "input_image", "detail": "auto",
                     "image_url": f"data:{t.media_type};base64,{t.data_b64}"}]})
            elif isinstance(t, AssistantToolCall):
                out.append({"type": "function_call", "call_id": t.id, "name": t.name,
                            "arguments": json.dumps(t.arguments)})
            elif isinstance(t, ToolResult):
                out.append({"type": "function_call_output", "call_id": t.id,
                            "output": t.content})
        return out

    @staticmethod
    def render_tools(tools: list[ToolSpec]) -> list[dict]:
        return [{"type": "function", "name": t.name, "description": t.description,
                 "parameters": t.schema, "strict": False} for t in tools]

    @staticmethod
    def render_choice(choice: ToolChoice) -> Any:
        return "required" if choice == "any" else {"type": "function", "name": choice[1]}

    @staticmethod
    def _stop(resp: Any) -> str:
        if resp.status == "incomplete" and resp.incomplete_details is not None:
            return f"incomplete:{resp.incomplete_details.reason}"
        return resp.status

    def complete(self, model: str, turns: list[Turn], *, tools: list[ToolSpec] | None = None,
                 tool_choice: ToolChoice = None, stream: bool = False, max_tokens: int = 64,
                 temperature: float | None = None) -> Result:
        kwargs: dict[str, Any] = {"model": model, "input": self.render(turns),
                                  "max_output_tokens": max_tokens}
        if tools:
            kwargs["tools"] = self.render_tools(tools)
        if tool_choice is not None:
            kwargs["tool_choice"] = self.render_choice(tool_choice)
        if temperature is not None:
            kwargs["temperature"] = temperature
        if not stream:
            resp = self.sdk.responses.create(**kwargs)
            calls = [Call(i.name, _args(i.arguments), i.call_id) for i in resp.output
                     if i.type == "function_call"]
            return Result(resp.output_text, calls, self._stop(resp), resp.usage.input_tokens,
                          resp.usage.output_tokens)
        text, items, final = "", {}, None
        with self.sdk.responses.stream(**kwargs) as events:
            for event in events:
                if event.type == "error":
                    try:
                        events.get_final_response()
                    except Exception as final_error:
                        raise ResponsesStreamFailed(event.code, event.message) from final_error
                    raise AssertionError("an error event, yet get_final_response() answered")
                if (event.type == "response.output_item.added"
                        and event.item.type == "function_call"):
                    items[event.output_index] = {"id": event.item.call_id,
                                                 "name": event.item.name, "args": ""}
                elif event.type == "response.function_call_arguments.delta":
                    items[event.output_index]["args"] += event.delta
                elif event.type == "response.output_text.delta":
                    text += event.delta
                elif event.type == "response.incomplete":
                    # The SDK's get_final_response() knows only response.completed.
                    final = event.response
            if final is None:
                final = events.get_final_response()
        calls = [Call(i["name"], _args(i["args"]), i["id"]) for _, i in sorted(items.items())]
        return Result(text, calls, self._stop(final), final.usage.input_tokens,
                      final.usage.output_tokens)


# ---- Bedrock Converse (boto3) -----------------------------------------------------------


class BedrockClient:
    name = "bedrock-converse"
    STOP_END, STOP_TOOL, STOP_MAX = "end_turn", "tool_use", "max_tokens"
    MIDSTREAM_ERROR = botocore.exceptions.EventStreamError

    _CODES = {400: "ValidationException", 403: "AccessDeniedException",
              404: "ResourceNotFoundException", 429: "ThrottlingException",
              500: "InternalServerException", 503: "ServiceUnavailableException"}

    def __init__(self, base_url: str, access_key_id: str, secret: str) -> None:
        # total_max_attempts=1: botocore itself retries throttling and 5xx otherwise.
        self.sdk = boto3.client(
            "bedrock-runtime", endpoint_url=base_url, region_name="us-east-1",
            aws_access_key_id=access_key_id, aws_secret_access_key=secret,
            config=Config(retries={"total_max_attempts": 1, "mode": "standard"},
                          read_timeout=60))

    @staticmethod
    def render(turns: list[Turn]) -> list[dict]:
        out: list[dict] = []
        for t in turns:
            if isinstance(t, UserText):
                out.append({"role": "user", "content": [{"text": t.text}]})
            elif isinstance(t, UserImage):
                fmt = t.media_type.split("/", 1)[1]
                out.append({"role": "user", "content": [
                    {"text": t.text}, {"image": {"format": fmt, "source": {"bytes": t.raw}}}]})
            elif isinstance(t, AssistantToolCall):
                out.append({"role": "assistant", "content": [
                    {"toolUse": {"toolUseId": t.id, "name": t.name, "input": t.arguments}}]})
            elif isinstance(t, ToolResult):
                out.append({"role": "user", "content": [
                    {"toolResult": {"toolUseId": t.id, "content": [{"text": t.content}]}}]})
        return out

    @staticmethod
    def render_tools(tools: list[ToolSpec], choice: ToolChoice) -> dict:
        config: dict[str, Any] = {"tools": [
            {"toolSpec": {"name": t.name, "description": t.description,
                          "inputSchema": {"json": t.schema}}} for t in tools]}
        if choice == "any":
            config["toolChoice"] = {"any": {}}
        elif choice is not None:
            config["toolChoice"] = {"tool": {"name": choice[1]}}
        return config

    def complete(self, model: str, turns: list[Turn], *, tools: list[ToolSpec] | None = None,
                 tool_choice: ToolChoice = None, stream: bool = False, max_tokens: int = 64,
                 temperature: float | None = None) -> Result:
        inference: dict[str, Any] = {"maxTokens": max_tokens}
        if temperature is not None:
            inference["temperature"] = temperature
        kwargs: dict[str, Any] = {"modelId": model, "messages": self.render(turns),
                                  "inferenceConfig": inference}
        if tools:
            kwargs["toolConfig"] = self.render_tools(tools, tool_choice)
        if not stream:
            resp = self.sdk.converse(**kwargs)
            content = resp["output"]["message"]["content"]
            text = "".join(b.get("text", "") for b in content)
            calls = [Call(b["toolUse"]["name"], b["toolUse"]["input"], b["toolUse"]["toolUseId"])
                     for b in content if "toolUse" in b]
            return Result(text, calls, resp["stopReason"], resp["usage"]["inputTokens"],
                          resp["usage"]["outputTokens"])
        text, blocks, stop, usage = "", {}, None, None
        for event in self.sdk.converse_stream(**kwargs)["stream"]:
            if "contentBlockStart" in event:
                start = event["contentBlockStart"]
                use = start["start"]["toolUse"]
                blocks[start["contentBlockIndex"]] = {"id": use["toolUseId"],
                                                      "name": use["name"], "args": ""}
            elif "contentBlockDelta" in event:
                delta = event["contentBlockDelta"]
                text += delta["delta"].get("text", "")
                if "toolUse" in delta["delta"]:
                    blocks[delta["contentBlockIndex"]]["args"] += delta["delta"]["toolUse"]["input"]
            elif "messageStop" in event:
                stop = event["messageStop"]["stopReason"]
            elif "metadata" in event:
                usage = event["metadata"]["usage"]
        assert usage is not None, "the stream ended without its metadata event"
        calls = [Call(b["name"], _args(b["args"]), b["id"]) for _, b in sorted(blocks.items())]
        return Result(text, calls, stop, usage["inputTokens"], usage["outputTokens"])

    def error_class(self, status: int) -> type[BaseException]:
        return getattr(self.sdk.exceptions, self._CODES[status])

    def status_of(self, exc: Any) -> int:
        return exc.response["ResponseMetadata"]["HTTPStatusCode"]

    def retry_after_of(self, exc: Any) -> str | None:
        return exc.response["ResponseMetadata"].get("HTTPHeaders", {}).get("retry-after")

    def code_of(self, exc: Any) -> str | None:
        return exc.response["Error"]["Code"]

    def message_of(self, exc: Any) -> str:
        return exc.response["Error"].get("Message", "")


# ---- Gemini generateContent (google-genai) ----------------------------------------------


class GeminiClient:
    name = "gemini"
    # Gemini ends a turn with STOP whether it wrote text or called functions.
    STOP_END, STOP_TOOL, STOP_MAX = "STOP", "STOP", "MAX_TOKENS"
    MIDSTREAM_ERROR = genai_errors.APIError

    def __init__(self, base_url: str, key: str) -> None:
        self.sdk = genai.Client(api_key=key, http_options=genai_types.HttpOptions(
            base_url=base_url, timeout=60_000))

    @staticmethod
    def render(turns: list[Turn]) -> list:
        T = genai_types
        out = []
        for t in turns:
            if isinstance(t, UserText):
                out.append(T.Content(role="user", parts=[T.Part(text=t.text)]))
            elif isinstance(t, UserImage):
                out.append(T.Content(role="user", parts=[
                    T.Part(text=t.text),
                    T.Part(inline_data=T.Blob(mime_type=t.media_type, data=t.raw))]))
            elif isinstance(t, AssistantToolCall):
                out.append(T.Content(role="model", parts=[T.Part(function_call=T.FunctionCall(
                    id=t.id, name=t.name, args=t.arguments))]))
            elif isinstance(t, ToolResult):
                out.append(T.Content(role="user", parts=[T.Part(
                    function_response=T.FunctionResponse(id=t.id, name=t.name,
                                                         response={"output": t.content}))]))
        return out

    @staticmethod
    def render_config(tools, choice, max_tokens, temperature):
        T = genai_types
        config = T.GenerateContentConfig(max_output_tokens=max_tokens, temperature=temperature)
        if tools:
            config.tools = [T.Tool(function_declarations=[
                T.FunctionDeclaration(name=t.name, description=t.description,
                                      parameters_json_schema=t.schema) for t in tools])]
            config.automatic_function_calling = T.AutomaticFunctionCallingConfig(disable=True)
        if choice is not None:
            names = None if choice == "any" else [choice[1]]
            config.tool_config = T.ToolConfig(function_calling_config=T.FunctionCallingConfig(
                mode="ANY", allowed_function_names=names))
        return config

    def complete(self, model: str, turns: list[Turn], *, tools: list[ToolSpec] | None = None,
                 tool_choice: ToolChoice = None, stream: bool = False, max_tokens: int = 64,
                 temperature: float | None = None) -> Result:
        kwargs = {"model": model, "contents": self.render(turns),
                  "config": self.render_config(tools, tool_choice, max_tokens, temperature)}
        chunks = (self.sdk.models.generate_content_stream(**kwargs) if stream
                  else [self.sdk.models.generate_content(**kwargs)])
        text, calls, finish, usage = "", [], None, None
        for chunk in chunks:  # a function call arrives whole, in the chunk that has it
            candidate = chunk.candidates[0] if chunk.candidates else None
            for part in (candidate.content.parts or []) if candidate and candidate.content else []:
                if part.function_call is not None:
                    fc = part.function_call
                    calls.append(Call(fc.name, dict(fc.args or {}), fc.id))
                elif part.text and not part.thought:
                    text += part.text
            if candidate is not None and candidate.finish_reason is not None:
                finish = candidate.finish_reason.value
            if chunk.usage_metadata is not None:
                usage = chunk.usage_metadata
        assert usage is not None, "no usageMetadata"
        return Result(text, calls, finish, usage.prompt_token_count or 0,
                      usage.candidates_token_count or 0)

    def error_class(self, status: int) -> type[BaseException]:
        return genai_errors.ServerError if status >= 500 else genai_errors.ClientError

    def status_of(self, exc: Any) -> int:
        return exc.code

    def retry_after_of(self, exc: Any) -> str | None:
        return exc.response.headers.get("retry-after") if exc.response is not None else None

    def code_of(self, exc: Any) -> str | None:
        return exc.status

    def message_of(self, exc: Any) -> str:
        return exc.message or str(exc)


SURFACES = ("openai-chat", "anthropic-messages", "openai-responses", "bedrock-converse",
            "gemini")
