"""The model catalog: public model ids, the deployments behind them, loaded from YAML."""

from .model import Catalog, Deployment, ModelEntry
from .loader import load_catalog, default_catalog

__all__ = ["Catalog", "Deployment", "ModelEntry", "load_catalog", "default_catalog"]
