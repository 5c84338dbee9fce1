"""Helpers shared by the CLI commands: the store, dates, output."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

from modelmart.store.base import Store, open_store
from modelmart.store.errors import StoreError


class CLIError(Exception):
    """A message for the user; the command exits with status 2."""


def add_database_arg(parser) -> None:
    parser.add_argument("--database", help="database URL (default: $MODELMART_DATABASE_URL "
                        "or sqlite:///modelmart.db in the working directory)")


def run_with_store(args, body: Callable[[Store], Awaitable[int]]) -> int:
    async def main() -> int:
        store = await open_store(args.database)
        try:
            return await body(store)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except (CLIError, ValueError, StoreError) as exc:
        print(f"modelmart: {exc}", file=sys.stderr)
        return 2


def parse_time(value: str | None, name: str) -> float | None:
    """``YYYY-MM-DD`` or a full ISO time (UTC unless it says otherwise) → epoch seconds."""
    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise CLIError(f"--{name}: expected a date like 2026-11-01 or 2026-11-01T12:00, got {value!r}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def print_table(rows: list[dict], columns: list[str]) -> None:
    if not rows:
        print("(none)")
        return
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
