"""``tools``, ``toolConfig`` and ``generationConfig``, both ways."""

from __future__ import annotations

from typing import Any

from modelmart.core.types import Request, ResponseFormat, Tool, ToolChoice

from ._check import array, fail, field, has, integer, number, obj, one_of, snake, string
from .schema import to_json_schema

_MODES = ("AUTO", "ANY", "NONE", "VALIDATED", "MODE_UNSPECIFIED")
# generationConfig fields with a canonical meaning; the rest stays in Request.extra.
_KNOWN_GEN = ("temperature", "topP", "topK", "maxOutputTokens", "stopSequences", "seed",
              "responseMimeType", "responseSchema", "responseJsonSchema", "candidateCount")


def decode_tools(raw: Any) -> list[Tool]:
    if raw is None:
        return []
    tools: list[Tool] = []
    for i, item in enumerate(array(raw, "tools")):
        spec = obj(item, f"tools[{i}]")
        other = [k for k in spec if k not in ("functionDeclarations", "function_declarations")]
        if other:
            raise fail(f"built-in tool {other[0]!r} is not supported; only functionDeclarations",
                       f"tools[{i}]")
        decls = array(field(spec, "functionDeclarations") or [], f"tools[{i}].functionDeclarations")
        tools.extend(_declaration(obj(d, f"tools[{i}].functionDeclarations[{j}]"),
                                  f"tools[{i}].functionDeclarations[{j}]")
                     for j, d in enumerate(decls))
    return tools


def _declaration(decl: dict, param: str) -> Tool:
    name = string(decl.get("name"), f"{param}.name", nonempty=True)
    desc = decl.get("description")
    if desc is not None:
        string(desc, f"{param}.description")
    if has(decl, "parametersJsonSchema"):
        schema = obj(field(decl, "parametersJsonSchema"), f"{param}.parametersJsonSchema")
    elif decl.get("parameters") is not None:
        schema = to_json_schema(obj(decl["parameters"], f"{param}.parameters"))
    else:
        schema = {"type": "object", "properties": {}}
    return Tool(name=name, description=desc, input_schema=schema)


def decode_tool_config(raw: Any, tools: list[Tool]) -> tuple[ToolChoice | None, list[Tool]]:
    """The tool choice, and the tools left once ``allowedFunctionNames`` is applied (ANY
    mode with several allowed names has no canonical form but "any of these tools")."""
    if raw is None:
        return None, tools
    fcc = field(obj(raw, "toolConfig"), "functionCallingConfig")
    if fcc is None:
        return None, tools
    p = "toolConfig.functionCallingConfig"
    fcc = obj(fcc, p)
    mode = one_of(fcc.get("mode") or "AUTO", f"{p}.mode", _MODES)
    allowed = [string(n, f"{p}.allowedFunctionNames[{k}]")
               for k, n in enumerate(array(field(fcc, "allowedFunctionNames") or [],
                                           f"{p}.allowedFunctionNames"))]
    if mode == "NONE":
        return ToolChoice("none"), tools
    if mode != "ANY":
        return ToolChoice("auto"), tools
    unknown = set(allowed) - {t.name for t in tools}
    if unknown:
        raise fail(f"allowedFunctionNames lists undeclared functions: {', '.join(sorted(unknown))}",
                   f"{p}.allowedFunctionNames")
    if len(allowed) == 1:
        return ToolChoice("tool", name=allowed[0]), tools
    kept = [t for t in tools if t.name in allowed] if allowed else tools
    return ToolChoice("any"), kept


def decode_generation_config(raw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Canonical Request fields, and the generationConfig fields with no canonical meaning
    (thinkingConfig, penalties ...), kept for a Gemini upstream."""
    if raw is None:
        return {}, {}
    p = "generationConfig"
    gen = obj(raw, p)
    known = set(_KNOWN_GEN) | {snake(k) for k in _KNOWN_GEN}
    rest = {k: v for k, v in gen.items() if k not in known}
    count = field(gen, "candidateCount")
    if count is not None and integer(count, f"{p}.candidateCount") != 1:
        raise fail(f"only candidateCount=1 is supported, got {count}", f"{p}.candidateCount")
    out: dict[str, Any] = {}
    _opt(out, "temperature", field(gen, "temperature"), lambda v: number(v, f"{p}.temperature", 0, 2))
    _opt(out, "top_p", field(gen, "topP"), lambda v: number(v, f"{p}.topP", 0, 1))
    _opt(out, "top_k", field(gen, "topK"), lambda v: integer(v, f"{p}.topK", 1))
    _opt(out, "max_tokens", field(gen, "maxOutputTokens"), lambda v: integer(v, f"{p}.maxOutputTokens", 1))
    _opt(out, "seed", field(gen, "seed"), lambda v: integer(v, f"{p}.seed"))
    stops = field(gen, "stopSequences")
    if stops is not None:
        out["stop"] = [string(s, f"{p}.stopSequences[{k}]")
                       for k, s in enumerate(array(stops, f"{p}.stopSequences"))]
    fmt = _response_format(gen, p)
    if fmt is not None:
        out["response_format"] = fmt
    return out, rest


def _opt(out: dict, key: str, value: Any, check) -> None:
    if value is not None:
        out[key] = check(value)


def _response_format(gen: dict, p: str) -> ResponseFormat | None:
    mime = field(gen, "responseMimeType")
    if mime is None or mime == "text/plain":
        if has(gen, "responseSchema") or has(gen, "responseJsonSchema"):
            raise fail("a response schema needs responseMimeType 'application/json'",
                       f"{p}.responseMimeType")
        return None
    one_of(mime, f"{p}.responseMimeType", ("text/plain", "application/json"))
    if has(gen, "responseJsonSchema"):
        return ResponseFormat("json_schema", schema=obj(field(gen, "responseJsonSchema"),
                                                        f"{p}.responseJsonSchema"))
    if has(gen, "responseSchema"):
        schema = obj(field(gen, "responseSchema"), f"{p}.responseSchema")
        return ResponseFormat("json_schema", schema=to_json_schema(schema))
    return ResponseFormat("json_object")


# ---- encode ----------------------------------------------------------------------------


def encode_tools(tools: list[Tool]) -> list[dict[str, Any]]:
    decls = []
    for t in tools:
        decl: dict[str, Any] = {"name": t.name}
        if t.description is not None:
            decl["description"] = t.description
        decl["parametersJsonSchema"] = t.input_schema
        decls.append(decl)
    return [{"functionDeclarations": decls}]


def encode_tool_config(choice: ToolChoice) -> dict[str, Any]:
    # Gemini has no switch for parallel calls: disable_parallel cannot be expressed.
    if choice.type == "tool":
        fcc: dict[str, Any] = {"mode": "ANY", "allowedFunctionNames": [choice.name]}
    else:
        fcc = {"mode": {"auto": "AUTO", "any": "ANY", "none": "NONE"}[choice.type]}
    return {"functionCallingConfig": fcc}


def encode_generation_config(req: Request, extra: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "temperature": req.temperature,
        "topP": req.top_p,
        "topK": req.top_k,
        "maxOutputTokens": req.max_tokens,
        "stopSequences": list(req.stop) or None,
        "seed": req.seed,
    }
    fmt = req.response_format
    if fmt is not None and fmt.type != "text":
        fields["responseMimeType"] = "application/json"
        if fmt.type == "json_schema" and fmt.schema is not None:
            fields["responseJsonSchema"] = fmt.schema
    out = {**extra, **{k: v for k, v in fields.items() if v is not None}}
    return out
