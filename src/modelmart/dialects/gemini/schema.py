"""Gemini's ``Schema`` (an OpenAPI 3.0 subset: upper-case type names, ``nullable``) to the
JSON Schema the canonical ``Tool.input_schema`` and ``ResponseFormat.schema`` hold.

Outgoing requests need no reverse conversion: they send ``parametersJsonSchema`` and
``responseJsonSchema``, which take JSON Schema as is, so a client's schema (with
``additionalProperties``, ``$ref`` ...) reaches Gemini without a lossy translation.
"""

from __future__ import annotations

from typing import Any

# Schema fields that hold sub-schemas, by their camelCase and snake_case spellings.
_SUBSCHEMA = {"items": "items", "anyOf": "anyOf", "any_of": "anyOf",
              "additionalProperties": "additionalProperties",
              "additional_properties": "additionalProperties"}
_MAPS = {"properties": "properties", "$defs": "$defs", "defs": "$defs"}
_RENAME = {"max_items": "maxItems", "min_items": "minItems", "max_length": "maxLength",
           "min_length": "minLength", "max_properties": "maxProperties",
           "min_properties": "minProperties"}
# OpenAPI-only hints with no JSON Schema meaning.
_DROP = {"nullable", "propertyOrdering", "property_ordering"}


def to_json_schema(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROP:
            continue
        if key == "type" and isinstance(value, str):
            if value.upper() != "TYPE_UNSPECIFIED":
                out["type"] = value.lower()
        elif key in _SUBSCHEMA:
            out[_SUBSCHEMA[key]] = ([to_json_schema(v) for v in value]
                                    if isinstance(value, list) else to_json_schema(value))
        elif key in _MAPS and isinstance(value, dict):
            out[_MAPS[key]] = {name: to_json_schema(v) for name, v in value.items()}
        else:
            out[_RENAME.get(key, key)] = value
    if schema.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out
