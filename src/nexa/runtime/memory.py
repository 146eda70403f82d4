"""How much memory a model takes once loaded, estimated from its GGUF header before loading it.

The memory budget compares these estimates, not live RSS: a model must be admitted
before its worker exists, and RSS of memory-mapped weights grows only as pages are touched.
"""

from __future__ import annotations

from pathlib import Path

from nexa.engine.spec import WorkerSpec
from nexa.store.gguf_meta import read_shape

MIB = 1024 * 1024
# A worker with xllamacpp imported and a tiny model loaded holds about 70 MiB (measured).
PROCESS_BASELINE = 96 * MIB
_UBATCH = 512  # llama.cpp's default micro-batch: the compute buffer holds logits for that many tokens
_LOGIT_BYTES = 4


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
    """Resident memory of a worker in bytes (Linux /proc), or None where unknown. A worker standing for a
    llama-server binary holds the model in its child, so the worker's children count too."""
    if pid is None:
        return None
    own = _vm_rss(pid)
    if own is None:
        return None
    return own + sum(_vm_rss(child) or 0 for child in _children(pid))


def _vm_rss(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _children(pid: int) -> list[int]:
    try:
        return [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
                for child in (task / "children").read_text().split()]
    except (OSError, ValueError):
        return []
