"""Exact money: integers of picodollars (10^-12 USD).

Prices are quoted in USD per million tokens; a price with up to six decimal places is an
integral number of picodollars per token, so every cost is an exact integer sum. Python ints
do not overflow; sums in the database are exact too (PostgreSQL NUMERIC, SQLite via an
exact aggregate of ours).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

PICO_PER_USD = 10**12
PICO_PER_TOKEN_PER_USD_PER_MTOK = 10**6  # $1 per million tokens = 10^6 pico per token


def usd_to_pico(value: Decimal | str | int | float) -> int:
    """USD → picodollars, exactly; a value finer than a picodollar is an error."""
    try:
        # str() first so a float like 0.1 means "0.1", not its binary expansion.
        d = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"not an amount of money: {value!r}") from None
    pico = d * PICO_PER_USD
    if pico != pico.to_integral_value():
        raise ValueError(f"{value} USD is finer than a picodollar")
    return int(pico)


def per_mtok_to_pico_per_token(value: Decimal | str | int | float) -> int:
    """A price in USD per million tokens → picodollars per token, exactly."""
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"not a price: {value!r}") from None
    if d < 0:
        raise ValueError(f"a price cannot be negative: {value}")
    pico = d * PICO_PER_TOKEN_PER_USD_PER_MTOK
    if pico != pico.to_integral_value():
        raise ValueError(f"price {value} USD per million tokens has more than 6 decimal places")
    return int(pico)


def pico_to_usd(pico: int) -> Decimal:
    return Decimal(pico) / PICO_PER_USD


def format_usd(pico: int, places: int = 12) -> str:
    """A plain decimal string, e.g. ``0.000123450000`` (no float rounding on the way)."""
    if places == 12:  # every digit of a picodollar amount: integer arithmetic is exact
        whole, frac = divmod(abs(pico), 10**12)
        return f"{'-' if pico < 0 else ''}{whole}.{frac:012d}"
    q = Decimal(1).scaleb(-places)
    return format(pico_to_usd(pico).quantize(q), "f")
