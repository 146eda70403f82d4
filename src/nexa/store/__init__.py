"""The local model store: one folder per model, described by its manifest."""

from nexa.store.manifest import FileEntry, Manifest, ModelType, QuantEntry
from nexa.store.names import ModelRef
from nexa.store.store import Store

__all__ = ["FileEntry", "Manifest", "ModelRef", "ModelType", "QuantEntry", "Store"]
