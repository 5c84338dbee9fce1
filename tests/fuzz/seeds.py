"""Valid requests of each surface, the starting points of the mutations: plain text, tools
with a forced choice, a tool call answered by its result, images, structured output,
streaming, sampling settings. ``{model}`` is filled per example with one of the fuzz
catalog's models, so every upstream encoder sees every client's requests."""

from __future__ import annotations

import base64

PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360f8ffff3f0005fe02fea7d6a4100000000049454e44ae426082")).decode()
SCHEMA = {"type": "object", "properties": {
    "city": {"type": "string", "maxLength": 40},
    "days": {"type": "integer", "minimum": 1, "maximum": 7},
    "units": {"enum": ["c", "f"]},
    "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3}},
    "required": ["city"]}
ARGS = '{"city": "Paris", "days": 2}'


def openai_chat(model: str) -> list[dict]:
    tool = {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                             "parameters": SCHEMA}}
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": ARGS}}
    return [
        {"model": model, "messages": [{"role": "user", "content": "Hello"}]},
        {"model": model, "max_tokens": 20, "temperature": 0.5, "top_p": 0.9, "seed": 7,
         "stop": ["\n\n"], "user": "u1", "n": 1,
         "messages": [{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": [{"type": "text", "text": "Hi"}]}]},
        {"model": model, "tools": [tool], "tool_choice": "required",
         "parallel_tool_calls": False,
         "messages": [{"role": "user", "content": "Weather in Paris?"}]},
        {"model": model, "tools": [tool],
         "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
         "messages": [{"role": "user", "content": "Weather?"},
                      {"role": "assistant", "content": None, "tool_calls": [call]},
                      {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]},
        {"model": model, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}",
                                                "detail": "low"}}]}]},
        {"model": model, "messages": [{"role": "user", "content": "JSON please"}],
         "response_format": {"type": "json_schema", "json_schema": {
             "name": "weather", "schema": SCHEMA, "strict": True}}},
        {"model": model, "stream": True, "stream_options": {"include_usage": True},
         "max_completion_tokens": 30, "messages": [{"role": "user", "content": "Stream"}]},
    ]


def anthropic_messages(model: str) -> list[dict]:
    tool = {"name": "get_weather", "description": "Weather", "input_schema": SCHEMA}
    return [
        {"model": model, "max_tokens": 20, "messages": [{"role": "user", "content": "Hello"}]},
        {"model": model, "max_tokens": 20, "system": [{"type": "text", "text": "Be brief."}],
         "temperature": 0.5, "top_p": 0.9, "top_k": 5, "stop_sequences": ["END"],
         "metadata": {"user_id": "u1"},
         "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]},
        {"model": model, "max_tokens": 50, "tools": [tool],
         "tool_choice": {"type": "tool", "name": "get_weather",
                         "disable_parallel_tool_use": True},
         "messages": [{"role": "user", "content": "Weather?"}]},
        {"model": model, "max_tokens": 50, "tools": [tool], "tool_choice": {"type": "auto"},
         "messages": [
             {"role": "user", "content": "Weather?"},
             {"role": "assistant", "content": [
                 {"type": "thinking", "thinking": "Look it up.", "signature": "sig"},
                 {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                  "input": {"city": "Paris"}}]},
             {"role": "user", "content": [
                 {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": False,
                  "content": [{"type": "text", "text": "sunny"}]}]}]},
        {"model": model, "max_tokens": 20, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PNG}},
            {"type": "text", "text": "What is this?"}]}]},
        {"model": model, "max_tokens": 20, "stream": True,
         "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}},
         "messages": [{"role": "user", "content": "JSON"}]},
    ]


def openai_responses(model: str) -> list[dict]:
    tool = {"type": "function", "name": "get_weather", "description": "Weather",
            "parameters": SCHEMA, "strict": False}
    return [
        {"model": model, "input": "Hello"},
        {"model": model, "instructions": "Be brief.", "max_output_tokens": 20,
         "temperature": 0.5, "top_p": 0.9, "store": False, "metadata": {"k": "v"},
         "input": [{"role": "user", "content": [{"type": "input_text", "text": "Hi"}]}]},
        {"model": model, "tools": [tool],
         "tool_choice": {"type": "function", "name": "get_weather"},
         "parallel_tool_calls": False,
         "input": [{"role": "user", "content": "Weather?"},
                   {"type": "reasoning", "summary": [{"type": "summary_text", "text": "hm"}],
                    "encrypted_content": "sig"},
                   {"type": "function_call", "call_id": "c1", "name": "get_weather",
                    "arguments": ARGS},
                   {"type": "function_call_output", "call_id": "c1", "output": "sunny"}]},
        {"model": model, "input": [{"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "What is this?"},
            {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}",
             "detail": "auto"}]}]},
        {"model": model, "stream": True, "input": "Stream",
         "text": {"format": {"type": "json_schema", "name": "weather", "schema": SCHEMA,
                             "strict": True}}},
    ]


def embeddings(model: str) -> list[dict]:
    return [
        {"model": model, "input": "Hello"},
        {"model": model, "input": ["a", "b"], "encoding_format": "base64", "dimensions": 8,
         "user": "u1"},
    ]


def bedrock_converse(model: str) -> list[dict]:
    tools = {"tools": [{"toolSpec": {"name": "get_weather", "description": "Weather",
                                     "inputSchema": {"json": SCHEMA}}}],
             "toolChoice": {"tool": {"name": "get_weather"}}}
    return [
        {"messages": [{"role": "user", "content": [{"text": "Hello"}]}]},
        {"system": [{"text": "Be brief."}],
         "inferenceConfig": {"maxTokens": 20, "temperature": 0.5, "topP": 0.9,
                             "stopSequences": ["END"]},
         "additionalModelRequestFields": {"top_k": 5},
         "messages": [{"role": "user", "content": [{"text": "Hi"}]}]},
        {"toolConfig": tools,
         "messages": [{"role": "user", "content": [{"text": "Weather?"}]},
                      {"role": "assistant", "content": [
                          {"toolUse": {"toolUseId": "t1", "name": "get_weather",
                                       "input": {"city": "Paris"}}}]},
                      {"role": "user", "content": [
                          {"toolResult": {"toolUseId": "t1", "status": "success",
                                          "content": [{"json": {"sky": "sunny"}},
                                                      {"text": "ok"}]}}]}]},
        {"messages": [{"role": "user", "content": [
            {"image": {"format": "png", "source": {"bytes": PNG}}}, {"text": "What?"}]}]},
        {"outputConfig": {"textFormat": {"type": "json_schema", "structure": {
            "jsonSchema": {"name": "weather", "schema": '{"type": "object"}'}}}},
         "messages": [{"role": "user", "content": [{"text": "JSON"}]}]},
    ]


ADMIN = {
    "customers": [{"name": "fuzz-customer", "rpm": 60, "tpm": 1000}, {"name": "c2"}],
    "keys": [{"customer": "fuzz-admin-co", "models": ["m1"], "rpm": 10, "tpm": 100,
              "budget_usd": "5.00", "period": "month", "aws": True, "name": "k"},
             {"customer": "fuzz-admin-co"}],
}
