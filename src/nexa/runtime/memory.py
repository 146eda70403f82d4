"""How much memory a model takes once loaded, estimated from its GGUF header before loading it.

The memory budget compares these estimates, not live RSS: a model must be admitted
before its worker exists, and RSS of memory-mapped weights grows only as pages are touched.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from gguf import GGUFReader, GGUFValueType

from nexa.engine.spec import WorkerSpec

MIB = 1024 * 1024
# A worker with xllamacpp imported and a tiny model loaded holds about 70 MiB (measured).
PROCESS_BASELINE = 96 * MIB
_KV_BYTES = 2  # llama.cpp's default KV cache type is f16
_UBATCH = 512  # llama.cpp's default micro-batch: the compute buffer holds logits for that many tokens
_LOGIT_BYTES = 4


@dataclass(frozen=True)
class Shape:
    """The header numbers that size the KV cache and the compute buffer."""

    n_layer: int
    n_head_kv: int
    key_length: int
    value_length: int
    n_vocab: int
    causal: bool  # encoder-only models (BERT) keep no KV cache

    def kv_bytes_per_token(self) -> int:
        if not self.causal:
            return 0
        return self.n_layer * self.n_head_kv * (self.key_length + self.value_length) * _KV_BYTES


def _value(reader: GGUFReader, key: str) -> int | bool | None:
    """A scalar, or the largest element of a per-layer array (some models vary heads by layer)."""
    field = reader.get_field(key)
    if field is None or not field.types:
        return None
    if field.types[0] == GGUFValueType.ARRAY:
        values = [int(field.parts[i][0]) for i in field.data] if field.data else []
        return max(values, default=None)
    return field.contents()


@functools.lru_cache(maxsize=64)
def _read_shape(path: str, mtime_ns: int) -> Shape | None:
    try:
        reader = GGUFReader(path, "r")
    except (OSError, ValueError):
        return None  # unreadable or truncated: the load itself will say why
    arch = str(reader.get_field("general.architecture").contents()) if reader.get_field("general.architecture") else ""
    n_layer = _value(reader, f"{arch}.block_count") or 0
    n_head = _value(reader, f"{arch}.attention.head_count") or 1
    n_embd = _value(reader, f"{arch}.embedding_length") or 0
    head_dim = n_embd // max(1, n_head)
    tokens = reader.get_field("tokenizer.ggml.tokens")
    causal = _value(reader, f"{arch}.attention.causal")
    return Shape(
        n_layer=int(n_layer),
        n_head_kv=int(_value(reader, f"{arch}.attention.head_count_kv") or n_head),
        key_length=int(_value(reader, f"{arch}.attention.key_length") or head_dim),
        value_length=int(_value(reader, f"{arch}.attention.value_length") or head_dim),
        n_vocab=len(tokens.data) if tokens is not None else 0,
        causal=True if causal is None else bool(causal),
    )


def read_shape(path: str) -> Shape | None:
    """The model's shape from its header, cached per file version; None when the header is unreadable."""
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        return None
    return _read_shape(path, mtime)


def estimate(spec: WorkerSpec, weight_bytes: int) -> int:
    """Bytes the worker will hold: weights (model, projector) + KV cache for ctx x parallel + compute + process.

    `weight_bytes` is the sum of the files' sizes (all shards and the projector), from the manifest.
    """
    shape = read_shape(spec.model_path)
    if shape is None:
        return weight_bytes + PROCESS_BASELINE
    kv = shape.kv_bytes_per_token() * spec.ctx * spec.parallel
    compute = shape.n_vocab * _UBATCH * _LOGIT_BYTES
    return weight_bytes + kv + compute + PROCESS_BASELINE


def rss(pid: int | None) -> int | None:
    """Resident memory of a process in bytes (Linux /proc), or None where unknown."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None

