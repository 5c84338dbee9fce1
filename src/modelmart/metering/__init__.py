"""Metering: provider costs and customer prices (exact picodollars), the durable usage
recorder, and statements and margin reports from the ledger."""

from .prices import PriceBook, PriceError, PriceSchedule, TokenPrices
from .pricing import Pricing, UnpricedModel, apply_markup
from .recorder import Recorder
from .reports import Statement, margins, statement, usage

__all__ = [
    "PriceBook", "PriceError", "PriceSchedule", "TokenPrices", "Pricing", "UnpricedModel",
    "apply_markup", "Recorder", "Statement", "margins", "statement", "usage",
]
