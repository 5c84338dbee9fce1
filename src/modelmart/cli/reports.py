"""``modelmart usage``, ``modelmart statement``, ``modelmart margins``, ``modelmart migrate``."""

from __future__ import annotations

from modelmart.core.errors import GatewayError
from modelmart.metering import reports

from .common import CLIError, add_database_arg, parse_time, print_json, print_table, run_with_store

BY_CHOICES = ["model", "day", "month", "key", "customer", "provider", "deployment", "status"]


def _usage(args) -> int:
    async def body(store) -> int:
        customer_id = None
        if args.customer:
            customer = await store.get_customer(args.customer)
            if customer is None:
                raise CLIError(f"no customer named {args.customer!r}")
            customer_id = customer.id
        by = args.by.split(",") if args.by else ["model"]
        for field in by:
            if field not in BY_CHOICES:
                raise CLIError(f"--by: {field!r} is not one of {', '.join(BY_CHOICES)}")
        rows = await reports.usage(store, customer_id=customer_id,
                                   since=parse_time(args.since, "since"),
                                   until=parse_time(args.until, "until"), by=by)
        if args.json:
            print_json(rows)
        else:
            print_table(rows, [*by, "requests", "input_tokens", "output_tokens",
                               "cache_read_tokens", "cost_usd", "price_usd", "margin_usd"])
        return 0
    return run_with_store(args, body)


def _statement(args) -> int:
    async def body(store) -> int:
        try:
            st = await reports.statement(store, args.customer, args.month)
        except (GatewayError, ValueError) as exc:
            raise CLIError(getattr(exc, "message", str(exc))) from None
        if args.csv:
            print(st.to_csv(), end="")
        elif args.json:
            print_json(st.to_dict())
        else:
            data = st.to_dict()
            print(f"Statement for {data['customer']}, {args.month}")
            print_table(data["lines"] + [data["total"]],
                        ["model", "requests", "input_tokens", "output_tokens", "price_usd"])
        return 0
    return run_with_store(args, body)


def _margins(args) -> int:
    async def body(store) -> int:
        try:
            data = await reports.margins(store, args.month)
        except (GatewayError, ValueError) as exc:
            raise CLIError(getattr(exc, "message", str(exc))) from None
        if args.json:
            print_json(data)
            return 0
        cols = ["requests", "revenue_usd", "cost_usd", "margin_usd", "margin_pct"]
        print(f"Margins for {args.month}\n\nBy provider:")
        print_table(data["by_provider"], ["provider", *cols])
        print("\nBy model:")
        print_table(data["by_model"], ["model", *cols])
        print("\nTotal:")
        print_table([data["total"]], cols)
        return 0
    return run_with_store(args, body)


def _migrate(args) -> int:
    from modelmart.store.base import open_store
    import asyncio

    async def main() -> int:
        store = await open_store(args.database, migrate=False)
        try:
            applied = await store.migrate()
        finally:
            await store.close()
        print("applied: " + ", ".join(applied) if applied else "the database is up to date")
        return 0

    return asyncio.run(main())


def register(sub) -> None:
    p = sub.add_parser("usage", help="usage and money from the ledger")
    p.add_argument("--customer")
    p.add_argument("--since", help="start date (inclusive), e.g. 2026-11-01")
    p.add_argument("--until", help="end date (exclusive)")
    p.add_argument("--by", help=f"comma-separated grouping: {', '.join(BY_CHOICES)} (default model)")
    p.add_argument("--json", action="store_true")
    add_database_arg(p)
    p.set_defaults(func=_usage)

    p = sub.add_parser("statement", help="a customer's monthly statement")
    p.add_argument("--customer", required=True)
    p.add_argument("--month", required=True, help="YYYY-MM")
    p.add_argument("--csv", action="store_true")
    p.add_argument("--json", action="store_true")
    add_database_arg(p)
    p.set_defaults(func=_statement)

    p = sub.add_parser("margins", help="revenue, provider cost and margin for a month")
    p.add_argument("--month", required=True, help="YYYY-MM")
    p.add_argument("--json", action="store_true")
    add_database_arg(p)
    p.set_defaults(func=_margins)

    p = sub.add_parser("migrate", help="apply database migrations")
    add_database_arg(p)
    p.set_defaults(func=_migrate)
