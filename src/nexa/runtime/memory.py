"""How much memory a model takes, in RAM and on each accelerator: estimated from its GGUF header before
it loads, then as its runtime reports it once loaded.

The memory budget compares these figures, not live RSS: a model must be admitted before its worker exists,
and RSS of memory-mapped weights grows only as pages are touched. Once loaded, the engine's own account of
each buffer it allocated (model, KV cache, output, compute; per device) replaces the estimate, so a GPU
model counts against its device's budget and only its host buffers against RAM.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nexa.engine.spec import WorkerSpec
from nexa.store.gguf_meta import read_shape

MIB = 1024 * 1024
GIB = 1024 * MIB
# A worker with xllamacpp imported and a tiny model loaded holds about 70 MiB (measured).
PROCESS_BASELINE = 96 * MIB
# Share of each GPU's memory the models may take by default: the rest is the driver's and other programs'.
DEVICE_SHARE = 0.9
_UBATCH = 512  # llama.cpp's default micro-batch: the compute buffer holds logits for that many tokens
_LOGIT_BYTES = 4
# The compute buffer also holds the attention mask: f16, a row per micro-batch token over the whole context
# (measured: 130 MiB of a tiny model's 131,072-token context, 34 MiB at 32,768).
_MASK_BYTES = 2


@dataclass(frozen=True)
class Footprint:
    """Bytes held in RAM and on each accelerator, by the runtime's device name (CUDA0, Vulkan0 ...)."""

    ram: int = 0
    devices: Mapping[str, int] = field(default_factory=dict)

    def __add__(self, other: Footprint) -> Footprint:
        devices = dict(self.devices)
        for name, size in other.devices.items():
            devices[name] = devices.get(name, 0) + size
        return Footprint(self.ram + other.ram, devices)

    def __sub__(self, other: Footprint) -> Footprint:
        return self + Footprint(-other.ram, {name: -size for name, size in other.devices.items()})

    @property
    def device_bytes(self) -> int:
        return sum(self.devices.values())

    def describe(self) -> str:
        """'1.20 GiB RAM, 3.40 GiB on CUDA0': how logs and errors name it."""
        parts = [f"{gib(self.ram)} RAM", *(f"{gib(size)} on {name}" for name, size in self.devices.items() if size)]
        return ", ".join(parts)


def device_budget(total: int, fixed: int | None) -> int:
    """Bytes models may take on a GPU of `total` bytes: --device-memory-budget (`fixed`) if set, else 90%."""
    return int(fixed) if fixed is not None else int(total * DEVICE_SHARE)


def gib(n: int) -> str:
    return f"{n / GIB:.2f} GiB"


def total(footprints: Iterable[Footprint]) -> Footprint:
    return sum(footprints, Footprint())


def estimate(spec: WorkerSpec, weight_bytes: int, accelerators: Mapping[str, int]) -> Footprint:
    """What the worker will hold: weights (model, projector, draft model) + the KV cache of ctx tokens (one,
    shared by the slots; its element type counted) + compute + process + the prompt cache in host RAM. With accelerators (name -> total
    bytes, as the runtime reports them), the offloaded share (spec.ngl of the model's layers; all for -1) goes to them in proportion to their size, as
    llama.cpp's layer split does.

    `weight_bytes` is the sum of the files' sizes (all shards and the projector), from the manifest.
    """
    draft = file_size(spec.draft_model_path)
    shape = read_shape(spec.model_path)
    host = PROCESS_BASELINE + spec.prompt_cache_mib * MIB  # never offloaded
    if shape is None:
        return Footprint(weight_bytes + draft + host)
    kv = shape.kv_bytes_per_token(spec.kv_cache_type) * spec.ctx
    draft_shape = read_shape(spec.draft_model_path) if spec.draft_model_path else None
    draft_kv = draft_shape.kv_bytes_per_token() * spec.ctx if draft_shape else 0  # the draft's stays f16
    compute = shape.n_vocab * _UBATCH * _LOGIT_BYTES + spec.ctx * _UBATCH * _MASK_BYTES
    engine = weight_bytes + kv + compute + draft + draft_kv
    on_devices = int(engine * offloaded_share(spec.ngl, shape.n_layer)) if accelerators else 0
    return Footprint(engine - on_devices + host, _spread(on_devices, accelerators))


def offloaded_share(ngl: int, n_layer: int) -> float:
    """Share of the model that `ngl` GPU layers put on the device: llama.cpp counts the output layer as one
    more; a negative ngl (-1 auto, -2 all) offloads them all, or as many as fit (see fit_devices)."""
    return 1.0 if ngl < 0 else min(1.0, ngl / (n_layer + 1))


def _spread(size: int, accelerators: Mapping[str, int]) -> dict[str, int]:
    whole = sum(accelerators.values())
    return {name: size * capacity // whole for name, capacity in accelerators.items()} if size and whole else {}


def fit_devices(need: Footprint, room: Mapping[str, int]) -> Footprint:
    """`need` with what exceeds each device's room moved to RAM: what llama.cpp does itself (--fit) when it
    may choose the GPU layers (ngl -1), so such a model is admitted partly offloaded, not refused."""
    devices = {name: max(0, min(size, room.get(name, size))) for name, size in need.devices.items()}
    moved = need.device_bytes - sum(devices.values())
    return Footprint(need.ram + moved, devices)


def file_size(path: str | None) -> int:
    try:
        return os.path.getsize(path) if path else 0
    except OSError:
        return 0


# "load_tensors:   CPU_Mapped model buffer size =    92.10 MiB", "llama_kv_cache:      CUDA0 KV buffer size = ...",
# "llama_context:  CUDA_Host  output buffer size = ...", "sched_reserve:        CPU compute buffer size = ...".
_BUFFER = re.compile(r"(\w+)\s+(?:[A-Za-z]+\s+)?buffer size\s*=\s*([\d.]+)\s*MiB")
_DEVICE = re.compile(r"[A-Za-z]+\d+")  # CUDA0, CUDA0_Split, ROCm1, Vulkan0; CPU_Mapped and CUDA_Host are RAM


def device_of(buffer: str) -> str | None:
    """The accelerator a buffer lives on, or None for host memory (Apple's Metal shares RAM: host too)."""
    match = _DEVICE.match(buffer)
    return None if not match or buffer.startswith(("CPU", "Metal")) else match.group(0)


class LoadReport:
    """The buffers an engine allocated while loading, read from its log: at verbosity 4 (see
    nexa.engine.params) both runtimes print one line per buffer, with its device."""

    def __init__(self) -> None:
        self._buffers: dict[str | None, float] = defaultdict(float)  # device (None: RAM) -> MiB

    def feed(self, line: str) -> None:
        if "buffer size" in line and (found := _BUFFER.search(line)):
            self._buffers[device_of(found.group(1))] += float(found.group(2))

    def footprint(self, projector_bytes: int = 0, prompt_cache: int = 0) -> Footprint | None:
        """What the worker holds, or None if the engine reported nothing (an older or quieter build).
        The projector's buffers are not itemised: it sits where most of the model went (mmproj offload). The
        prompt cache in host RAM fills as prompts leave their slots: counted at its limit from the start."""
        if not self._buffers:
            return None
        devices = {name: int(mib * MIB) for name, mib in self._buffers.items() if name}
        ram = int(self._buffers.get(None, 0.0) * MIB) + PROCESS_BASELINE + prompt_cache
        if devices:
            busiest = max(devices, key=devices.__getitem__)
            devices[busiest] += projector_bytes
        else:
            ram += projector_bytes
        return Footprint(ram, devices)


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
