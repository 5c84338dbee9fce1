"""``modelmart``: serve the gateway, manage customers and keys, read the ledger."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from modelmart.catalog.loader import CatalogError, load_catalog
from modelmart.store.errors import StoreError

from . import accounts, batches, reports, serve
from . import evals as eval_commands


def _models_from_server(args: argparse.Namespace) -> int:
    """Ask a running server: only it knows each deployment's health."""
    import httpx

    key = args.admin_key or os.environ.get("MODELMART_ADMIN_KEY")
    if not key:
        print("modelmart: --server needs the admin key (--admin-key or $MODELMART_ADMIN_KEY)",
              file=sys.stderr)
        return 2
    try:
        resp = httpx.get(args.server.rstrip("/") + "/admin/v1/models",
                         headers={"authorization": f"Bearer {key}"}, timeout=10)
    except httpx.HTTPError as exc:
        print(f"modelmart: cannot reach {args.server}: {exc}", file=sys.stderr)
        return 2
    if resp.status_code != 200:
        print(f"modelmart: {resp.status_code}: {resp.text}", file=sys.stderr)
        return 2
    for model in resp.json():
        print(f"{model['id']}  (strategy: {model['strategy']})")
        for dep in model["deployments"]:
            health = dep.get("health") or {}
            state = health.get("state", "unknown")
            extra = "".join(f" {k}={health[k]}" for k in
                            ("consecutive_failures", "latency_ms", "ttft_ms", "last_error")
                            if health.get(k) not in (None, 0, ""))
            print(f"  - {dep['name']}: {dep['provider']} model={dep['model']} [{state}]{extra}")
    return 0


def _models(args: argparse.Namespace) -> int:
    if args.server:
        return _models_from_server(args)
    try:
        catalog = load_catalog(args.config or os.environ.get("MODELMART_CONFIG"))
    except CatalogError as exc:
        print(f"modelmart: {exc}", file=sys.stderr)
        return 2
    for entry in catalog.models.values():
        print(f"{entry.id}  (strategy: {entry.strategy})")
        for dep in entry.deployments:
            cfg = dep.config
            where = cfg.base_url or "in process"
            print(f"  - {dep.name}: {dep.provider} model={cfg.model} at {where}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelmart", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve.register(sub)
    models = sub.add_parser("models", help="list the catalog's models and deployments")
    models.add_argument("--config")
    models.add_argument("--server", help="a running server's URL: show each deployment's health")
    models.add_argument("--admin-key", help="admin key for --server (or $MODELMART_ADMIN_KEY)")
    models.set_defaults(func=_models)
    accounts.register(sub)
    reports.register(sub)
    eval_commands.register(sub)
    batches.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except StoreError as exc:  # e.g. `migrate` or `serve` without the server key they need
        print(f"modelmart: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
