"""The admin API's OpenAPI document and a small offline docs page rendered from it."""

from __future__ import annotations

import html
from functools import lru_cache

from modelmart import __version__

_ERROR = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _op(summary: str, *, params=(), body=None, ok="200", ok_schema=None) -> dict:
    op: dict = {"summary": summary, "security": [{"bearer": []}],
                "responses": {ok: {"description": "ok", "content": {"application/json": {
                    "schema": ok_schema or {"type": "object"}}}},
                              "400": _ERROR, "401": _ERROR, "403": _ERROR, "404": _ERROR}}
    if params:
        op["parameters"] = [{"name": n, "in": where, "required": req, "schema": {"type": "string"},
                             "description": d} for n, where, req, d in params]
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


_CUSTOMER_IN = {"type": "object", "required": ["name"], "properties": {
    "name": {"type": "string"}, "rpm": {"type": "integer"}, "tpm": {"type": "integer"}}}
_KEY_IN = {"type": "object", "required": ["customer"], "properties": {
    "customer": {"type": "string"}, "models": {"type": "array", "items": {"type": "string"}},
    "rpm": {"type": "integer"}, "tpm": {"type": "integer"},
    "budget_usd": {"type": "string", "description": "decimal USD, e.g. \"25.00\""},
    "period": {"enum": ["day", "month", "total"]}, "aws": {"type": "boolean"},
    "name": {"type": "string"}}}
_MONTH = ("month", "query", True, "YYYY-MM")


@lru_cache(maxsize=1)
def openapi_spec() -> dict:
    p = "/admin/v1"
    spec = {
        "openapi": "3.1.0",
        "info": {"title": "modelmart admin API", "version": __version__,
                 "description": "Customers, API keys, usage, statements and margins. "
                                "Authenticate with the admin key printed on first start."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {"type": "object", "properties": {"error": {
                "type": "object", "properties": {"message": {"type": "string"},
                                                 "type": {"type": "string"}}}}}}},
        "paths": {
            f"{p}/customers": {
                "get": _op("List customers"),
                "post": _op("Create a customer", body=_CUSTOMER_IN, ok="201")},
            f"{p}/keys": {
                "get": _op("List API keys", params=[
                    ("customer", "query", False, "only this customer's keys"),
                    ("include_revoked", "query", False, "true to include revoked keys")]),
                "post": _op("Create an API key (the secret is in the response, once)",
                            body=_KEY_IN, ok="201")},
            f"{p}/keys/{{key}}": {"delete": _op("Revoke a key by id or prefix", params=[
                ("key", "path", True, "key id or prefix")])},
            f"{p}/usage": {"get": _op("Usage and money from the ledger", params=[
                ("customer", "query", False, "customer name"),
                ("since", "query", False, "start date, inclusive"),
                ("until", "query", False, "end date, exclusive"),
                ("by", "query", False, "comma-separated: model,day,month,key,customer,provider,deployment,status")])},
            f"{p}/statements/{{customer}}": {"get": _op("A customer's monthly statement", params=[
                ("customer", "path", True, "customer name"), _MONTH,
                ("format", "query", False, "json (default) or csv")])},
            f"{p}/margins": {"get": _op("Revenue, provider cost and margin per provider and model",
                                        params=[_MONTH])},
            f"{p}/models": {"get": _op("Models, their deployments and each deployment's health")},
        },
    }
    from . import admin_batches, admin_console  # their routes' entries
    for module in (admin_console, admin_batches):
        for path, ops in module.spec_paths(p, _op).items():
            spec["paths"].setdefault(path, {}).update(ops)
    return spec


def _docs_html() -> str:
    spec = openapi_spec()
    rows = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            params = ", ".join(p["name"] for p in op.get("parameters", []))
            rows.append(f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}"
                        f"</code></td><td>{html.escape(op['summary'])}</td><td>{html.escape(params)}</td></tr>")
    return ("<!doctype html><meta charset=utf-8><title>modelmart admin API</title>"
            "<style>body{font:15px system-ui;margin:2em}td{padding:4px 10px;border-bottom:1px solid #ddd}</style>"
            f"<h1>modelmart admin API</h1><p>{html.escape(spec['info']['description'])} "
            "The machine-readable document is <a href=/admin/openapi.json>/admin/openapi.json</a>.</p>"
            "<table><tr><th>method</th><th>path</th><th>what</th><th>parameters</th></tr>"
            + "".join(rows) + "</table>")


DOCS_HTML = _docs_html()
