"""Which CPU instruction sets a native build may use here: those the CPU has *and* the OS lets programs use.

`-march=native` trusts the CPU alone, which is not enough: a CPU may advertise AMX while the kernel does not
enable its register state for processes, and the binary then dies with SIGILL (`tilezero`) on its first
matrix multiply. So the build names each instruction set explicitly from what Linux reports usable.
"""

from __future__ import annotations

import ctypes
import platform
from functools import cache
from pathlib import Path

# ggml's CMake option -> the /proc/cpuinfo flags it needs. Linux drops AVX and AVX-512 flags from cpuinfo
# when their register state is not enabled in XCR0, so these flags are enough for everything but AMX.
GGML_X86 = {
    "GGML_SSE42": ("sse4_2",),
    "GGML_AVX": ("avx",),
    "GGML_AVX2": ("avx2",),
    "GGML_FMA": ("fma",),
    "GGML_F16C": ("f16c",),
    "GGML_BMI2": ("bmi2",),
    "GGML_AVX_VNNI": ("avx_vnni",),
    "GGML_AVX512": ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"),
    "GGML_AVX512_VBMI": ("avx512vbmi",),
    "GGML_AVX512_VNNI": ("avx512_vnni",),
    "GGML_AVX512_BF16": ("avx512_bf16",),
    "GGML_AMX_TILE": ("amx_tile",),
    "GGML_AMX_INT8": ("amx_int8",),
    "GGML_AMX_BF16": ("amx_bf16",),
}
_AMX = ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")
_ARCH_REQ_XCOMP_PERM = 0x1023
_XFEATURE_XTILEDATA = 18
_SYS_ARCH_PRCTL = 158  # x86-64


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def amx_permitted() -> bool:
    """Whether the kernel grants this process AMX tile data (Linux 5.16+ asks each process to request it);
    a kernel that does not enable AMX refuses, and so must the build."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syscall(_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA) == 0
    except (OSError, AttributeError):
        return False


def usable_options(flags: set[str], amx_ok: bool) -> list[str]:
    """The ggml x86 options this machine can run, in ggml's order."""
    return [option for option, needs in GGML_X86.items()
            if all(flag in flags for flag in needs) and (amx_ok or option not in _AMX)]


@cache
def machine_options() -> tuple[str, ...]:
    """usable_options() for this machine; empty where it is not x86-64 (ggml's native detection is safe there)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return ()
    flags = cpu_flags()
    return tuple(usable_options(flags, "amx_tile" in flags and amx_permitted()))


def feature_names(options: list[str] | tuple[str, ...]) -> list[str]:
    """GGML_AVX512_VNNI -> avx512_vnni: what `nexa runtime list` shows."""
    return [option.removeprefix("GGML_").lower() for option in options]


def tag(options: list[str] | tuple[str, ...]) -> str:
    """A short name for a set of options, for the install folder: the widest vectors, plus amx."""
    names = set(feature_names(options))
    widest = next((n for n in ("avx512", "avx2", "avx") if n in names), platform.machine().lower() or "cpu")
    return widest + ("-amx" if "amx_tile" in names else "")
