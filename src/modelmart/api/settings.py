"""Server settings: from CLI flags, the environment and the catalog's ``server:`` section."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from modelmart.catalog import Catalog, load_catalog
from modelmart.catalog.loader import server_settings


@dataclass(slots=True)
class Settings:
    config_path: str | None = None
    max_body_bytes: int = 32 * 1024 * 1024
    # A prebuilt catalog (tests); when None it is loaded from ``config_path``.
    catalog: Catalog | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls) -> "Settings":
        path = os.environ.get("MODELMART_CONFIG") or None
        server = server_settings(path)
        max_mb = float(os.environ.get("MODELMART_MAX_BODY_MB", server.get("max_body_mb", 32)))
        return cls(config_path=path, max_body_bytes=int(max_mb * 1024 * 1024))

    def load_catalog(self) -> Catalog:
        return self.catalog if self.catalog is not None else load_catalog(self.config_path)
