"""The model catalog: public model ids, the deployments behind them, loaded from YAML."""

from .model import Catalog, CooldownPolicy, Deployment, ModelEntry, RetryPolicy
from .loader import load_catalog, default_catalog

__all__ = ["Catalog", "CooldownPolicy", "Deployment", "ModelEntry", "RetryPolicy", "load_catalog", "default_catalog"]
