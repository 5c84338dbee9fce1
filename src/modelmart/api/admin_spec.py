"""The admin API's OpenAPI document and a small offline docs page rendered from it."""

from __future__ import annotations

import html
from functools import lru_cache

from modelmart import __version__

from . import admin_fields as fields

_JSON = "application/json"
_ERROR = {"description": "error",
          "content": {_JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}
_TEXT = {"type": "string"}
_INT = {"type": "integer"}
_NUMBER = {"type": "number"}


def _maybe(schema: dict) -> dict:
    return {**schema, "type": [schema["type"], "null"]}


def _object(**properties: dict) -> dict:
    return {"type": "object", "required": list(properties), "properties": properties}


def _list(items: dict) -> dict:
    return {"type": "array", "items": items}


def _op(summary: str, *, params=(), body=None, ok="200", ok_schema: dict | None = None, csv=False,
        errors=("400", "401", "403", "404"), constraints: str | None = None,
        also: tuple[str, ...] = ()) -> dict:
    """``constraints``: what a valid request must also satisfy that JSON Schema cannot say
    (one date after another, a cursor from a previous page): a request the schema allows
    may still be a 400 for it (``x-modelmart-constraints``)."""
    content = {_JSON: {"schema": ok_schema if ok_schema is not None else {}}}
    if csv:
        content["text/csv"] = {"schema": _TEXT}
    for media_type in also:  # other representations of the answer (Markdown, SVG)
        content[media_type] = {"schema": _TEXT}
    op: dict = {"summary": summary, "security": [{"bearer": []}],
                "responses": {ok: {"description": "ok", "content": content},
                              **{status: _ERROR for status in errors}}}
    if params:
        # (name, in, required, schema, description); a 4-tuple is a string parameter.
        params = [p if len(p) == 5 else (*p[:3], {"type": "string"}, p[3]) for p in params]
        op["parameters"] = [{"name": n, "in": where, "required": req, "schema": schema,
                             "description": d} for n, where, req, schema, d in params]
    if body:
        op["requestBody"] = {"required": True, "content": {_JSON: {"schema": body}}}
    if constraints:
        op["x-modelmart-constraints"] = constraints
    return op


_CUSTOMER = _object(id=_INT, name=_TEXT, rpm=_maybe(_INT), tpm=_maybe(_INT),
                    created_at=_NUMBER)
_KEY = _object(id=_INT, prefix=_TEXT, customer=_maybe(_TEXT), role=_TEXT, name=_maybe(_TEXT),
               models=_maybe(_list(_TEXT)), rpm=_maybe(_INT), tpm=_maybe(_INT),
               budget_usd=_maybe(_TEXT), budget_period=_maybe(_TEXT), created_at=_NUMBER,
               revoked_at=_maybe(_NUMBER), aws_access_key_id=_maybe(_TEXT))
_NEW_KEY = {**_KEY, "required": [*_KEY["required"], "secret"],
            "properties": {**_KEY["properties"], "secret": _TEXT,
                           "aws_secret_access_key": _TEXT}}
_NAME = fields.Text(required=True).schema()
_DATE = {"type": "string", "format": "date"}
_BY = "|".join(fields.BY_FIELDS)
_PERIOD = _object(start=_TEXT, end=_TEXT)
_MARGIN_ROW = {"type": "object", "properties": {"requests": _INT, "revenue_pico": _INT,
                                                "cost_pico": _INT, "margin_pico": _INT}}
_MONTH = ("month", "query", True, {"type": "string", "pattern": fields.MONTH_PATTERN},
          f"YYYY-MM, from {fields.FIRST_YEAR}-01 to {fields.LAST_YEAR}-12")
_FLAG = {"enum": ["true", "false", "1", "0", "yes", "no"]}


@lru_cache(maxsize=1)
def openapi_spec() -> dict:
    p = "/admin/v1"
    spec = {
        "openapi": "3.1.0",
        "info": {"title": "modelmart admin API", "version": __version__,
                 "description": "Customers, API keys, usage, statements and margins. "
                                "Authenticate with the admin key printed on first start. "
                                "Optional fields take null for not set; unknown fields are "
                                "refused."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": _object(error=_object(
                message=_TEXT, type=_TEXT, param=_maybe(_TEXT), code=_maybe(_TEXT)))}},
        "paths": {
            f"{p}/customers": {
                "get": _op("List customers", ok_schema=_list(_CUSTOMER)),
                "post": _op("Create a customer", body=fields.body_schema(fields.CUSTOMER),
                            ok="201", ok_schema=_CUSTOMER,
                            errors=("400", "401", "403", "409", "413"))},
            f"{p}/keys": {
                "get": _op("List API keys", ok_schema=_list(_KEY), params=[
                    ("customer", "query", False, _NAME, "only this customer's keys"),
                    ("include_revoked", "query", False, _FLAG, "true to include revoked keys")]),
                "post": _op("Create an API key (the secret is in the response, once)",
                            body=fields.body_schema(fields.KEY, **fields.KEY_RULES), ok="201",
                            ok_schema=_NEW_KEY,
                            errors=("400", "401", "403", "404", "413"))},
            f"{p}/keys/{{key}}": {"delete": _op(
                "Revoke a key by id or prefix", ok_schema=_object(
                    id=_INT, prefix=_TEXT, revoked={"type": "boolean"}),
                params=[("key", "path", True, _TEXT, "key id or prefix")])},
            f"{p}/usage": {"get": _op("Usage and money from the ledger", ok_schema=_list(
                {"type": "object", "properties": {"requests": _INT, "price_pico": _INT,
                                                  "cost_pico": _INT}}), params=[
                ("customer", "query", False, _NAME, "customer name"),
                ("since", "query", False, _DATE, "start date, inclusive"),
                ("until", "query", False, _DATE, "end date, exclusive"),
                ("by", "query", False, {"type": "string", "pattern": f"^({_BY})(,({_BY}))*$"},
                 f"comma-separated: {', '.join(fields.BY_FIELDS)}")])},
            f"{p}/statements/{{customer}}": {"get": _op(
                "A customer's monthly statement", csv=True, ok_schema=_object(
                    customer=_TEXT, customer_id=_INT, month=_TEXT, period=_PERIOD,
                    lines=_list({"type": "object"}), total={"type": "object"}), params=[
                    ("customer", "path", True, _NAME, "customer name"), _MONTH,
                    ("format", "query", False, {"enum": ["json", "csv"]},
                     "json (default) or csv")])},
            f"{p}/margins": {"get": _op(
                "Revenue, provider cost and margin per provider and model", params=[_MONTH],
                ok_schema=_object(month=_TEXT, period=_PERIOD, by_provider=_list(_MARGIN_ROW),
                                  by_model=_list(_MARGIN_ROW), total=_MARGIN_ROW))},
            f"{p}/models": {"get": _op(
                "Models, their deployments and each deployment's health", ok_schema=_list(
                    _object(id=_TEXT, strategy=_TEXT, deployments=_list({"type": "object"}))))},
        },
    }
    from . import admin_batches, admin_console  # their routes' entries
    from .admin_evals import openapi_paths  # evaluations (api/admin_evals.py)
    entries = [*admin_console.spec_paths(p, _op).items(), *admin_batches.spec_paths(p, _op).items(),
               *openapi_paths(p).items()]
    for path, ops in entries:
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
