"""Console sessions in the database, so that every worker and replica knows them.

Only a hash of the cookie's value is stored (like API keys): reading this table does not
give anyone a session. Expiry is both idle (``last_seen``) and absolute (``expires_at``).
"""

from __future__ import annotations

from dataclasses import dataclass

COLUMNS = ("id_hash", "key_id", "customer_id", "role", "created_at", "last_seen",
           "expires_at", "client")
SELECT = f"SELECT {', '.join(COLUMNS)} FROM console_sessions WHERE id_hash = ?"
INSERT = (f"INSERT INTO console_sessions ({', '.join(COLUMNS)}) "
          f"VALUES ({', '.join('?' * len(COLUMNS))})")
TOUCH = "UPDATE console_sessions SET last_seen = ? WHERE id_hash = ?"
DELETE = "DELETE FROM console_sessions WHERE id_hash = ?"
PURGE = "DELETE FROM console_sessions WHERE expires_at <= ? OR last_seen <= ?"


@dataclass(slots=True)
class ConsoleSession:
    id_hash: str  # sha256 hex of the cookie's value
    key_id: int  # the key that signed in: the admin key, or a customer's API key
    customer_id: int | None  # None for the operator
    role: str  # "admin" | "customer"
    created_at: float
    last_seen: float
    expires_at: float  # absolute end, whatever the activity
    client: str | None = None  # the address that signed in, for the operator's eyes

    def to_row(self) -> tuple:
        return tuple(getattr(self, c) for c in COLUMNS)

    @classmethod
    def from_row(cls, row) -> "ConsoleSession":
        return cls(*row)
