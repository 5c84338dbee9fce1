"""``modelmart``: serve the gateway, manage customers and keys, read the ledger."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from modelmart.catalog.loader import CatalogError, load_catalog

from . import accounts, reports, serve


def _models(args: argparse.Namespace) -> int:
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
    models.set_defaults(func=_models)
    accounts.register(sub)
    reports.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
