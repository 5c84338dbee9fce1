"""Tables, migrations and queries. SQLite by default, PostgreSQL when the URL says so."""

from modelmart.store.base import Store, open_store
from modelmart.store.errors import Conflict, NotFoundInStore, SecretKeyError, StoreError

__all__ = ["Conflict", "NotFoundInStore", "SecretKeyError", "Store", "StoreError", "open_store"]
