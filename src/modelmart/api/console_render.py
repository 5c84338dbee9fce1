"""Templates for the console: Jinja2 with autoescaping, and the filters the pages use to
show money, counts, rates and times."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape

from modelmart import __version__
from modelmart.core.money import format_usd

from . import charts


def usd(pico: int | None) -> str:
    """For reading: cents with thousands separators; amounts under a cent with six places."""
    if pico is None:
        return "–"
    amount = Decimal(pico) / 10**12
    if amount and abs(amount) < Decimal("0.01"):
        return f"${amount.quantize(Decimal('0.000001'), ROUND_HALF_UP)}"
    return f"${amount.quantize(Decimal('0.01'), ROUND_HALF_UP):,}"


def money(pico: int | None) -> Markup:
    """A sum of money: readable, with the exact amount in its title and data attribute."""
    if pico is None:
        return Markup("–")
    return Markup(f'<span class="usd" data-pico="{int(pico)}" '
                  f'title="{escape(format_usd(int(pico)))} USD">{escape(usd(pico))}</span>')


def num(value) -> str:
    if value is None:
        return "–"
    return f"{value:,}" if isinstance(value, int) else str(value)


def pct(ratio) -> str:
    if ratio is None:
        return "–"
    return f"{float(ratio) * 100:.2f}%"


def chart_num(value: float) -> str:
    """An axis or tooltip count: 1,234 or 12.5k."""
    if value >= 10_000:
        return f"{value / 1000:,.0f}k"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def when(value) -> str:
    """An ISO time or epoch seconds → ``2026-11-26 14:03:05`` (UTC)."""
    if value is None:
        return "–"
    if isinstance(value, (int, float)):
        value = datetime.fromtimestamp(value, timezone.utc).isoformat()
    return str(value).replace("T", " ").replace("Z", "").split(".")[0].split("+")[0]


class Templates:
    def __init__(self, folder: Path) -> None:
        self.env = Environment(loader=FileSystemLoader(str(folder)),
                               autoescape=select_autoescape(["html"]), trim_blocks=True,
                               lstrip_blocks=True)
        self.env.filters.update(usd=usd, money=money, num=num, pct=pct, when=when)
        self.env.globals.update(version=__version__, charts=charts, chart_num=chart_num,
                                chart_usd=usd, point_label=lambda p: p["label"])

    def render(self, name: str, **context) -> str:
        return self.env.get_template(name).render(**context)
