"""Speculative decoding per model (`--model-option NAME:draft=...`): both runtimes run llama.cpp's own.

`draft=ngram-mod` (or another n-gram mode) drafts from text already in the context: no second model, and a
large gain where the answer repeats its prompt (editing code, rewriting a document), none elsewhere.
`draft=org/small-model` drafts with a small model from the store that shares the target's vocabulary.
"""

from __future__ import annotations

from typing import Any

from nexa.engine.spec import DRAFT_MODEL, NGRAM_MODES
from nexa.store import ModelRef, Store


def draft_fields(store: Store, choice: str | None) -> dict[str, Any]:
    """WorkerSpec fields for a model's draft option; ModelNotFound if it names a model that is not pulled."""
    if not choice:
        return {}
    if choice in NGRAM_MODES:
        return {"speculative": choice}
    manifest, quant = store.resolve(ModelRef.parse(choice))
    path = manifest.quants[quant].files[0].location(store.model_dir(manifest.name))
    return {"speculative": DRAFT_MODEL, "draft_model_path": str(path)}
