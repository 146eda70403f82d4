"""The GPUs a runtime can use, as the runtime itself reports them: what the device-memory budget is sized by.

A llama-server binary lists them with `--list-devices`; xllamacpp's wheel with `get_device_info()`, asked in
a child process because the router never imports the engine. A CPU-only build reports none.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache

from nexa.runtime.memory import MIB
from nexa.runtime.runtimes import XLLAMACPP

log = logging.getLogger("nexa.accelerators")

# "  CUDA0: NVIDIA H100 80GB HBM3 (81007 MiB, 80466 MiB free)"
_LISTED = re.compile(r"^\s+(\S+): (.*) \((\d+) MiB, (\d+) MiB free\)\s*$", re.MULTILINE)
_ASK_WHEEL = (
    "import json, xllamacpp\n"
    "print(json.dumps([[d['name'], d['description'], d['memory_total'], d['memory_free']]\n"
    "    for d in xllamacpp.get_device_info() if d['type'].name.endswith('GPU')]))"
)
_PROBE_TIMEOUT = 60.0  # a first CUDA initialisation can take seconds


@dataclass(frozen=True)
class Accelerator:
    name: str  # the runtime's device name, as in its buffer names: CUDA0, Vulkan0, ROCm0
    description: str
    total: int  # bytes
    free: int  # bytes, when it was asked


def parse_list_devices(output: str) -> tuple[Accelerator, ...]:
    return tuple(Accelerator(name, description.strip(), int(total) * MIB, int(free) * MIB)
                 for name, description, total, free in _LISTED.findall(output) if int(total))


@lru_cache(maxsize=16)
def accelerators(runtime: str) -> tuple[Accelerator, ...]:
    """GPUs that `runtime` (a resolved WorkerSpec.runtime) sees, asked once per runtime; none when it
    cannot say (logged: the budget then counts every model in RAM, as on a CPU-only machine)."""
    command = [sys.executable, "-c", _ASK_WHEEL] if runtime == XLLAMACPP else [runtime, "--list-devices"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=_PROBE_TIMEOUT)
        if runtime == XLLAMACPP:
            found = tuple(Accelerator(name, text, int(size), int(free))
                          for name, text, size, free in json.loads(done.stdout.strip().splitlines()[-1]) if size)
        else:
            found = parse_list_devices(done.stdout)
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError, TypeError) as exc:
        log.warning("could not ask %s for its GPUs (%s); counting its models in RAM", runtime, exc)
        return ()
    return found
