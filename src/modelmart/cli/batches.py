"""``modelmart batches list|show|cancel``: batches and their progress, from the database."""

from __future__ import annotations

from modelmart.api import admin_batches
from modelmart.core.errors import GatewayError

from .common import CLIError, add_database_arg, print_json, print_table, run_with_store

COLUMNS = ["id", "customer", "endpoint", "status", "done", "total", "succeeded", "errored",
           "running", "price_usd"]


def _run(args, fetch) -> int:
    async def body(store) -> int:
        try:
            data = await fetch(store)
        except GatewayError as exc:
            raise CLIError(exc.message) from None
        rows = data if isinstance(data, list) else [data]
        print_json(data) if args.json else print_table(rows, COLUMNS)
        return 0
    return run_with_store(args, body)


def _list(args) -> int:
    return _run(args, lambda store: admin_batches.progress_list(
        store, customer=args.customer, status=args.status, limit=args.limit))


def _show(args) -> int:
    return _run(args, lambda store: admin_batches.progress_one(store, args.id))


def _cancel(args) -> int:
    return _run(args, lambda store: admin_batches.cancel(store, args.id))


def register(sub) -> None:
    p = sub.add_parser("batches", help="batches and their progress")
    actions = p.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="batches, newest first")
    listing.add_argument("--customer")
    listing.add_argument("--status", choices=admin_batches.STATUSES)
    listing.add_argument("--limit", type=int, default=100)
    listing.set_defaults(func=_list)
    show = actions.add_parser("show", help="one batch")
    show.add_argument("id")
    show.set_defaults(func=_show)
    cancel = actions.add_parser("cancel", help="stop a batch; requests not run end cancelled")
    cancel.add_argument("id")
    cancel.set_defaults(func=_cancel)
    for action in (listing, show, cancel):
        action.add_argument("--json", action="store_true")
        add_database_arg(action)
