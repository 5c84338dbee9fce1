"""Tables, migrations and queries. SQLite by default, PostgreSQL when the URL says so."""

from modelmart.store.base import Store, open_store
from modelmart.store.errors import Conflict, NotFoundInStore, StoreError

__all__ = ["Conflict", "NotFoundInStore", "Store", "StoreError", "open_store"]
