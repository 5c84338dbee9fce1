"""``modelmart serve``: first-run setup, the limits coordinator for several workers, the
ledger writer for SQLite, and the server (``modelmart.server``)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import sys
import tempfile

from modelmart.api import logs
from modelmart.catalog.loader import CatalogError, load_catalog
from modelmart.store.base import open_store
from modelmart.store.errors import Conflict
from modelmart.tenancy import accounts

FIRST_CUSTOMER = "default"


async def first_run(database_url: str | None) -> list[str]:
    """Make the admin key, and a first customer with a key on an empty database, so a
    newcomer can call a model right away. Returns lines to print (secrets, shown once)."""
    store = await open_store(database_url)
    lines = []
    try:
        admin = await accounts.ensure_admin_key(store, os.environ.get("MODELMART_ADMIN_KEY")
                                                or None)
        if admin:
            lines.append(f"admin key (admin API only; shown once): {admin}")
        if not await store.list_customers():
            try:
                await accounts.create_customer(store, FIRST_CUSTOMER)
            except Conflict:  # another replica starting on the same database made it
                return lines
            _, secret = await accounts.create_key(store, FIRST_CUSTOMER, name="first key")
            lines.append(f"API key for customer '{FIRST_CUSTOMER}' (shown once): {secret}")
    finally:
        await store.close()
    return lines


def serve(args) -> int:
    if args.server == "uvicorn" and importlib.util.find_spec("uvicorn") is None:
        print("modelmart: --server uvicorn needs uvicorn: pip install 'modelmart[uvicorn]'",
              file=sys.stderr)
        return 2
    if args.config:
        os.environ["MODELMART_CONFIG"] = os.path.abspath(args.config)
    if args.database:
        os.environ["MODELMART_DATABASE_URL"] = args.database
    try:
        load_catalog(os.environ.get("MODELMART_CONFIG"))  # fail fast on a bad catalog
    except CatalogError as exc:
        print(f"modelmart: {exc}", file=sys.stderr)
        return 2
    try:
        lines = asyncio.run(first_run(os.environ.get("MODELMART_DATABASE_URL")))
    except ValueError as exc:
        print(f"modelmart: {exc}", file=sys.stderr)
        return 2
    for line in lines:
        print(f"modelmart: {line}", file=sys.stderr)
    coordinator = None
    if args.workers > 1 and not os.environ.get("MODELMART_REDIS_URL"):
        # Workers share rate limits and budgets through a coordinator in this process.
        from modelmart.tenancy.coordinator import start_coordinator

        path = os.path.join(tempfile.mkdtemp(prefix="modelmart-"), "limits.sock")
        coordinator = start_coordinator(path)
        os.environ["MODELMART_COORDINATOR_SOCKET"] = path
    os.environ["MODELMART_LOG_FORMAT"] = args.log_format  # the workers log alike
    logs.configure(args.log_level, args.log_format)
    metrics_dir = None
    if args.workers > 1:
        # Each worker publishes its metrics here; any of them answers a scrape for all.
        metrics_dir = tempfile.mkdtemp(prefix="modelmart-metrics-")
        os.environ["MODELMART_METRICS_DIR"] = metrics_dir
    if args.metrics_port:
        os.environ["MODELMART_METRICS_PORT"] = str(args.metrics_port)
        os.environ["MODELMART_METRICS_HOST"] = args.metrics_host or args.host
    writer = None
    if os.environ.get("MODELMART_LEDGER_WRITER", "on").lower() not in ("0", "off", "false", "no"):
        # SQLite: one process inserts every worker's usage, so the workers don't (see
        # metering/writer.py).
        from modelmart.api.settings import Settings
        from modelmart.metering.writer import start_writer

        writer = start_writer(Settings.from_env().database_url)
        if writer is not None:
            os.environ["MODELMART_LEDGER_SOCKET"] = writer.socket_path
    print(f"modelmart serving on http://{args.host}:{args.port} "
          f"(OpenAI: /v1/chat/completions, Anthropic: /v1/messages, admin: /admin/v1)",
          file=sys.stderr)
    from modelmart.api.workers import run_server, serve_workers

    try:
        if args.workers > 1:
            return serve_workers(args.workers, args.host, args.port, access_log=args.access_log,
                                 log_level=args.log_level, server=args.server,
                                 max_per_peer=args.max_per_peer, grace=args.shutdown_grace)
        from modelmart.api.app import app_from_env

        run_server(app_from_env(), args.host, args.port, server=args.server,
                   access_log=args.access_log, log_level=args.log_level,
                   max_per_peer=args.max_per_peer, grace=args.shutdown_grace)
    except OSError as exc:
        print(f"modelmart: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    except SystemExit as exc:  # the app's startup failed (logged), or uvicorn is missing
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        return exc.code if isinstance(exc.code, int) else 1
    finally:
        if writer is not None:
            writer.stop()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
        if coordinator is not None:
            coordinator.stop()
            shutil.rmtree(os.path.dirname(coordinator.socket_path), ignore_errors=True)
    return 0


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve the gateway")
    p.add_argument("--config", help="catalog YAML file (default: the bundled model only)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--database", help="database URL (default: $MODELMART_DATABASE_URL or "
                   "sqlite:///modelmart.db)")
    p.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "error", "critical"])
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.add_argument("--log-format", choices=["text", "json"], default="text",
                   help="json: one JSON object a line, with the request id")
    p.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                   help="serve /metrics on this port too, without the admin key")
    p.add_argument("--metrics-host", default=None,
                   help="the address of --metrics-port (default: --host)")
    p.add_argument("--server", choices=["modelmart", "uvicorn"], default="modelmart",
                   help="the HTTP server: modelmart's own (default) or uvicorn "
                   "(pip install 'modelmart[uvicorn]')")
    p.add_argument("--max-per-peer", type=int, default=None, metavar="N",
                   help="open connections per client address at most (default 2048; 0: no "
                   "cap, e.g. behind a proxy that is every client's address)")
    p.add_argument("--shutdown-grace", type=float, default=30.0, metavar="SECONDS",
                   help="on SIGTERM/SIGINT, how long requests and streams in flight may take "
                   "to finish (default 30; keep it under the orchestrator's own grace period)")
    p.set_defaults(func=serve)
