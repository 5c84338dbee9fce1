"""Customers' keys, rate limits and spend budgets: authentication and admission from memory.

Nothing here reads the store on the request path: keys come from ``KeyCache``, limits and
budgets from atomic counters (in process, the coordinator, or Redis; see ``counters``).
"""

from modelmart.tenancy.budgets import Budgets, Reservation, budget_window
from modelmart.tenancy.coordinator import CoordinatorCounters, CoordinatorHandle, start_coordinator
from modelmart.tenancy.counters import (CounterTable, Counters, MemoryCounters, RedisCounters,
                                        make_counters)
from modelmart.tenancy.keys import KeyCache, generate_secret, hash_secret, prefix_of
from modelmart.tenancy.limits import RateLimiter, Ticket

__all__ = [
    "Budgets", "CoordinatorCounters", "CoordinatorHandle", "CounterTable", "Counters",
    "KeyCache", "MemoryCounters", "RateLimiter", "RedisCounters", "Reservation", "Ticket",
    "budget_window", "generate_secret", "hash_secret", "make_counters", "prefix_of",
    "start_coordinator",
]
