"""Which runtime serves a model: xllamacpp's engine in a Python worker, or a llama-server binary.

Native runtimes live in `$NEXA_DATADIR/runtimes/<name>/` (a `llama-server` binary beside `runtime.json`
saying what it was built for), put there by `nexa runtime build`. A user chooses with `--runtime` or
`--model-option NAME:runtime=...`: `auto` (the best installed runtime this machine can run, else
xllamacpp), `xllamacpp`, an installed runtime's name, or the path of any llama-server binary.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from nexa.errors import ConfigError
from nexa.runtime import cpu

XLLAMACPP = "xllamacpp"
AUTO = "auto"
BINARY = "llama-server"
INFO = "runtime.json"
# "version: 0.6.0-dev (build 11434, commit unknown)"; older builds said "version: 11434 (abc123)".
_VERSION = re.compile(r"\(build (\d+)|version: (\d+) \(")


def runtimes_dir(datadir: Path) -> Path:
    return datadir / "runtimes"


@dataclass(frozen=True)
class NativeRuntime:
    """An installed llama-server and what it was built for (its runtime.json)."""

    binary: Path
    build: str  # llama.cpp build number, e.g. "11434"
    cpu_options: tuple[str, ...]  # ggml options such as GGML_AVX2
    gpu: str | None  # "cuda", "vulkan" or None

    @property
    def name(self) -> str:
        return self.binary.parent.name

    def runs_here(self) -> bool:
        """Whether every instruction set it was built with is usable on this machine (a store copied from
        another machine may hold a build this CPU cannot run)."""
        return set(self.cpu_options) <= set(cpu.machine_options())

    def describe(self) -> str:
        features = ", ".join(cpu.feature_names(self.cpu_options)) or "native"
        return f"llama-server b{self.build} ({features}{'; ' + self.gpu if self.gpu else ''})"


def read_runtime(folder: Path) -> NativeRuntime | None:
    try:
        info = json.loads((folder / INFO).read_text())
        return NativeRuntime(folder / BINARY, str(info["build"]), tuple(info["cpu_options"]), info.get("gpu"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def installed(datadir: Path) -> list[NativeRuntime]:
    """Runtimes installed in the data directory, best first: GPU builds, then the widest CPU builds."""
    folder = runtimes_dir(datadir)
    found = [r for r in map(read_runtime, sorted(folder.iterdir()) if folder.is_dir() else []) if r]
    return sorted(found, key=lambda r: (r.gpu is not None, len(r.cpu_options), r.build), reverse=True)


@lru_cache(maxsize=64)
def resolve(choice: str, datadir: Path) -> str:
    """What WorkerSpec.runtime holds for a user's choice: 'xllamacpp' or a llama-server binary's absolute path.

    Looked up once per choice and data directory: the runtime that `nexa serve` named at start stays the
    one it uses."""
    choice = choice.strip()
    if choice == XLLAMACPP:
        return XLLAMACPP
    if choice == AUTO:
        best = next((r for r in installed(datadir) if r.runs_here() and os.access(r.binary, os.X_OK)), None)
        return str(best.binary) if best else XLLAMACPP
    named = runtimes_dir(datadir) / choice
    path = Path(choice).expanduser()
    path = named / BINARY if "/" not in choice and named.is_dir() else path / BINARY if path.is_dir() else path
    if not path.is_file():
        known = ", ".join(r.name for r in installed(datadir)) or "none installed"
        raise ConfigError(f"runtime {choice!r} is neither auto, xllamacpp, an installed runtime ({known}) nor a "
                          "llama-server binary; build one with: nexa runtime build")
    if not os.access(path, os.X_OK):
        raise ConfigError(f"runtime {path} is not executable; chmod +x it or choose --runtime xllamacpp")
    return str(path.resolve())


def describe(runtime: str) -> str:
    """How `nexa serve` names a resolved runtime."""
    if runtime == XLLAMACPP:
        from importlib.metadata import version

        return f"xllamacpp {version('xllamacpp')} (portable wheel, in a Python worker)"
    native = read_runtime(Path(runtime).parent)
    return f"{native.describe()} at {runtime}" if native else f"llama-server at {runtime}"


def check_runs(runtime: str) -> str:
    """Run a llama-server binary's --version: a binary for another machine, or one missing a library,
    is a clear error at start rather than a failed load later. Returns its llama.cpp build number."""
    if runtime == XLLAMACPP:
        return ""
    try:
        done = subprocess.run([runtime, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"runtime {runtime} cannot run here ({exc}); rebuild it with: nexa runtime build") from None
    found = _VERSION.search(done.stdout + done.stderr)
    if done.returncode != 0 or not found:
        said = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        raise ConfigError(f"runtime {runtime} does not run as llama-server here ({said[0]}); "
                          "rebuild it with: nexa runtime build, or choose --runtime xllamacpp")
    return found.group(1) or found.group(2)
