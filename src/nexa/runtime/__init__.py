"""Running models: worker processes and the manager that owns them."""

from nexa.runtime.manager import Lease, ModelManager
from nexa.runtime.worker import Worker

__all__ = ["Lease", "ModelManager", "Worker"]
