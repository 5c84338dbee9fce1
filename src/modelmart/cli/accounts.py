"""``modelmart customers`` and ``modelmart keys``."""

from __future__ import annotations

import argparse

from modelmart.store.errors import Conflict
from modelmart.store.sealing import new_server_key
from modelmart.tenancy import accounts

from .common import CLIError, add_database_arg, print_json, print_table, run_with_store

KEY_COLUMNS = ["id", "prefix", "customer", "role", "models", "rpm", "tpm", "budget_usd",
               "budget_period", "revoked_at"]


def _customers_create(args) -> int:
    async def body(store) -> int:
        try:
            c = await accounts.create_customer(store, args.name, rpm=args.rpm, tpm=args.tpm)
        except Conflict as exc:
            raise CLIError(str(exc)) from None
        if args.json:
            print_json({"id": c.id, "name": c.name, "rpm": c.rpm, "tpm": c.tpm})
        else:
            print(f"customer {c.name} created (id {c.id})")
        return 0
    return run_with_store(args, body)


def _customers_list(args) -> int:
    async def body(store) -> int:
        rows = [{"id": c.id, "name": c.name, "rpm": c.rpm, "tpm": c.tpm}
                for c in await store.list_customers()]
        print_json(rows) if args.json else print_table(rows, ["id", "name", "rpm", "tpm"])
        return 0
    return run_with_store(args, body)


def _keys_create(args) -> int:
    async def body(store) -> int:
        # "" and " , " are lists too (refused as naming no model), not "every model"
        models = args.models.split(",") if args.models is not None else None
        key, secret = await accounts.create_key(
            store, args.customer, models=models, rpm=args.rpm, tpm=args.tpm,
            budget_usd=args.budget, period=args.period, aws=args.aws, name=args.name)
        view = accounts.key_view(key) | {"secret": secret}
        if key.aws_secret:
            view["aws_secret_access_key"] = key.aws_secret
        if args.json:
            print_json(view)
        else:
            print(f"key {key.prefix} (id {key.id}) for customer {key.customer_name}")
            print(f"secret: {secret}")
            if key.aws_secret:
                print(f"aws_access_key_id: {key.aws_access_key_id}")
                print(f"aws_secret_access_key: {key.aws_secret}")
            print("Store the secret now: it is shown only once.")
        return 0
    return run_with_store(args, body)


def _limit(text: str) -> int | None:
    """A limit on the command line: a positive integer, or ``none`` to remove it."""
    if text.strip().lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or 'none', got {text!r}")


def _given(args, names: tuple[str, ...]) -> dict:
    """The options given (argparse leaves the others at the sentinel ``...``)."""
    return {n: getattr(args, n) for n in names if getattr(args, n) is not ...}


def _keys_update(args) -> int:
    async def body(store) -> int:
        changes = _given(args, ("rpm", "tpm", "models", "budget", "period", "name"))
        if "models" in changes:  # "all": every model; "" and " , " are refused as no model
            models = changes["models"]
            changes["models"] = None if models.strip().lower() == "all" else models.split(",")
        if "budget" in changes:
            budget = changes.pop("budget")
            changes["budget_usd"] = None if budget.strip().lower() == "none" else budget
        key = await accounts.update_key(store, args.key, changes)
        view = accounts.key_view(key)
        if args.json:
            print_json(view)
        else:
            print(f"key {key.prefix} (id {key.id}) updated: " + ", ".join(
                f"{c}={view[c]}" for c in ("models", "rpm", "tpm", "budget_usd",
                                          "budget_period")))
        return 0
    return run_with_store(args, body)


def _customers_update(args) -> int:
    async def body(store) -> int:
        try:
            c = await accounts.update_customer(store, args.name, _given(args, ("rpm", "tpm")))
        except LookupError as exc:
            raise CLIError(str(exc)) from None
        if args.json:
            print_json({"id": c.id, "name": c.name, "rpm": c.rpm, "tpm": c.tpm})
        else:
            print(f"customer {c.name} updated: rpm={c.rpm}, tpm={c.tpm}")
        return 0
    return run_with_store(args, body)


def _keys_server_key(args) -> int:
    print(new_server_key())
    return 0


def _keys_list(args) -> int:
    async def body(store) -> int:
        customer_id = None
        if args.customer:
            customer = await store.get_customer(args.customer)
            if customer is None:
                raise CLIError(f"no customer named {args.customer!r}")
            customer_id = customer.id
        keys = await store.list_keys(customer_id=customer_id, include_revoked=args.all)
        rows = [accounts.key_view(k) for k in keys]
        print_json(rows) if args.json else print_table(rows, KEY_COLUMNS)
        return 0
    return run_with_store(args, body)


def _keys_revoke(args) -> int:
    async def body(store) -> int:
        key = await accounts.revoke_key(store, args.key)
        print(f"key {key.prefix} (id {key.id}) revoked")
        return 0
    return run_with_store(args, body)


def register(sub) -> None:
    customers = sub.add_parser("customers", help="manage customers").add_subparsers(
        dest="action", required=True)
    p = customers.add_parser("create", help="create a customer")
    p.add_argument("name")
    p.add_argument("--rpm", type=int, help="requests per minute across all its keys")
    p.add_argument("--tpm", type=int, help="tokens per minute across all its keys")
    p.add_argument("--json", action="store_true")
    add_database_arg(p)
    p.set_defaults(func=_customers_create)
    p = customers.add_parser("update", help="change a customer's limits")
    p.add_argument("name")
    p.add_argument("--rpm", type=_limit, default=..., help="requests per minute, or none")
    p.add_argument("--tpm", type=_limit, default=..., help="tokens per minute, or none")
    p.add_argument("--json", action="store_true")
    add_database_arg(p)
    p.set_defaults(func=_customers_update)
    p = customers.add_parser("list", help="list customers")
    p.add_argument("--json", action="store_true")
    add_database_arg(p)
    p.set_defaults(func=_customers_list)

    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(dest="action", required=True)
    p = keys.add_parser("create", help="create an API key (the secret is printed once)")
    p.add_argument("--customer", required=True)
    p.add_argument("--models", help="comma-separated model ids this key may use (default: all)")
    p.add_argument("--rpm", type=int, help="requests per minute")
    p.add_argument("--tpm", type=int, help="tokens per minute")
    p.add_argument("--budget", help="spend limit in USD")
    p.add_argument("--period", choices=["day", "month", "total"], help="budget period (default month)")
    p.add_argument("--aws", action="store_true",
                   help="also make an AWS access key id and secret (SigV4, for boto3 clients)")
    p.add_argument("--name", help="a label for the key")
    p.add_argument("--json", action="store_true")
    add_database_arg(p)
    p.set_defaults(func=_keys_create)
    p = keys.add_parser("server-key", help="print a new random server key (for "
                        "MODELMART_SECRET_KEY, which encrypts the AWS secrets of SigV4 keys)")
    p.set_defaults(func=_keys_server_key)
    p = keys.add_parser("list", help="list API keys")
    p.add_argument("--customer")
    p.add_argument("--all", action="store_true", help="include revoked keys")
    p.add_argument("--json", action="store_true")
    add_database_arg(p)
    p.set_defaults(func=_keys_list)
    p = keys.add_parser("update", help="change a key's limits, models or budget (running "
                        "servers pick it up within a second)")
    p.add_argument("key", help="key id or prefix")
    p.add_argument("--rpm", type=_limit, default=..., help="requests per minute, or none")
    p.add_argument("--tpm", type=_limit, default=..., help="tokens per minute, or none")
    p.add_argument("--models", default=..., help="comma-separated model ids, or all")
    p.add_argument("--budget", default=..., help="spend limit in USD, or none")
    p.add_argument("--period", default=..., choices=["day", "month", "total"],
                   help="budget period")
    p.add_argument("--name", default=..., help="a label for the key")
    p.add_argument("--json", action="store_true")
    add_database_arg(p)
    p.set_defaults(func=_keys_update)
    p = keys.add_parser("revoke", help="revoke an API key by id or prefix")
    p.add_argument("key")
    add_database_arg(p)
    p.set_defaults(func=_keys_revoke)
