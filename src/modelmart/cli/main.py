"""``modelmart``: serve the gateway and inspect its catalog."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from modelmart.catalog.loader import CatalogError, load_catalog


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    if args.config:
        os.environ["MODELMART_CONFIG"] = os.path.abspath(args.config)
    try:
        load_catalog(os.environ.get("MODELMART_CONFIG"))  # fail fast on a bad catalog
    except CatalogError as exc:
        print(f"modelmart: {exc}", file=sys.stderr)
        return 2
    options = dict(host=args.host, port=args.port, log_level=args.log_level,
                   access_log=args.access_log, http="httptools", lifespan="on",
                   timeout_graceful_shutdown=5)
    try:
        import uvloop  # noqa: F401

        options["loop"] = "uvloop"
    except ImportError:
        pass
    print(f"modelmart serving on http://{args.host}:{args.port} "
          f"(OpenAI: /v1/chat/completions, Anthropic: /v1/messages)", file=sys.stderr)
    if args.workers > 1:
        uvicorn.run("modelmart.api.app:app_from_env", factory=True, workers=args.workers, **options)
    else:
        from modelmart.api.app import app_from_env

        uvicorn.run(app_from_env(), **options)
    return 0


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

    serve = sub.add_parser("serve", help="serve the gateway")
    serve.add_argument("--config", help="catalog YAML file (default: the bundled model only)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.set_defaults(func=_serve)

    models = sub.add_parser("models", help="list the catalog's models and deployments")
    models.add_argument("--config")
    models.set_defaults(func=_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
