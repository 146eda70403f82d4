"""What a worker needs to start a model: built by the router, read by the worker process."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from nexa.store.manifest import ModelType


# llama.cpp's speculative decoding types that need no draft model: they draft from the context's own text.
NGRAM_MODES = ("ngram-mod", "ngram-simple", "ngram-map-k", "ngram-map-k4v", "ngram-cache")
DRAFT_MODEL = "draft-simple"
# KV cache element types: f16 (llama.cpp's default) or quantized, which holds about 2x / 3.5x the context.
KVCacheType = Literal["f16", "q8_0", "q4_0"]
# Shortest worker key served with: nexa's random keys (secrets.token_urlsafe(32)) have 43 characters.
MIN_API_KEY = 32


class WorkerSpec(BaseModel):
    """Sent to the worker on stdin (never argv, which other users can read: it carries the API key)."""

    model_path: str = Field(description="GGUF to load; the first shard of a split model.")
    mmproj_path: str | None = None
    model_type: ModelType
    alias: str = Field(description="Name the engine reports as `model`; the router rewrites it per request.")
    ctx: int = Field(
        ge=64, description="Context tokens of the model's one KV cache, which its slots share (llama.cpp's unified "
        "KV cache): a single request may use all of it.",
    )
    parallel: int = Field(ge=1)
    threads: int = Field(ge=1)
    ngl: int = -1
    kv_cache_type: KVCacheType = "f16"
    prompt_cache_mib: int = Field(
        0, ge=0, description="Host RAM (MiB) for prompt caches that left a slot (llama.cpp's --cache-ram); 0: none.",
    )
    slot_save_path: str | None = Field(
        None, description="Folder (ending in '/') where the engine saves and restores its slots' prompt caches when "
        "asked (llama.cpp's --slot-save-path); None: slots are never saved.",
    )
    reasoning_format: Literal["parsed", "raw"] = "parsed"
    speculative: str | None = Field(
        None, description="llama.cpp's speculative decoding type (ngram-mod, draft-simple...); None drafts nothing.",
    )
    draft_model_path: str | None = Field(None, description="GGUF of the draft model, for draft-simple.")
    runtime: str = Field(
        "xllamacpp", description="What runs the model: 'xllamacpp' (the engine in a Python process) or the "
        "absolute path of a llama-server binary; nexa.runtime.runtimes.resolve() turns a user's choice into this.",
    )
    api_key: str = Field(repr=False, description="The worker's own key; kept out of repr so it never reaches a log.")

    def guessable_key(self) -> bool:
        """Whether the key is too short to be one of nexa's random ones (a placeholder such as '-')."""
        return len(self.api_key) < MIN_API_KEY
