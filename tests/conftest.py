"""Shared fixtures: tiny generated models, the real starter model (cached), one nexa server per session."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from nexa.hub.starter import STARTER_NAME, fetch_starter
from nexa.runtime.runtimes import installed
from nexa.store import ModelRef, ModelType, Store
from nexa.store.importer import import_local
from tests.fixtures.minilm import import_minilm
from tests.fixtures.fake_hub import FakeHub, make_test_hub, nexa_env
from tests.fixtures.tiny_models import QWEN3_TEMPLATE, make_all, make_chat_llm

# Tiny models imported into the session store: name -> (files, type or None to detect).
TINY = {
    "test/qwen3-text": (["qwen3-script-text.gguf"], None),
    "test/llama-text": (["llama-script-text.gguf"], None),
    "test/qwen3-random": (["qwen3-random.gguf"], None),
    # Retrieval (issue 5): tiny BERT embedders (mean and CLS pooling) and a reranker.
    "test/bert-embed": (["bert-embed.gguf"], None),
    "test/bert-embed-cls": (["bert-embed-cls.gguf"], None),
    "test/bert-rerank": (["bert-rerank.gguf"], None),
    # Chat features (issue 4): scripted reasoning and tool-calling models, and projector pairs.
    "test/qwen3-think": (["qwen3-script-think.gguf"], None),
    "test/qwen3-tool": (["qwen3-script-tool.gguf"], None),
    "test/qwen3-tool-split": (["qwen3-script-tool-split.gguf"], None),
    "test/qwen3-tool-parallel": (["qwen3-script-tool-parallel.gguf"], None),
    "test/qwen3-tool-bad": (["qwen3-script-tool-bad.gguf"], None),
    # Agents (issue 20): a call of a Responses namespace's function, and of a custom (freeform) tool.
    "test/qwen3-tool-namespaced": (["qwen3-script-tool-namespaced.gguf"], None),
    "test/qwen3-tool-custom": (["qwen3-script-tool-custom.gguf"], None),
    "test/vision-gemma3": (["qwen3-script-text.gguf", "mmproj-gemma3.gguf"], None),
    "test/vision-mlp": (["qwen3-script-text.gguf", "mmproj-mlp.gguf"], None),
    "test/audio-qwen2a": (["qwen3-script-text.gguf", "mmproj-qwen2a.gguf"], None),
}


def cache_dir() -> Path:
    """Downloads kept between runs (CI caches this folder): NEXA_TEST_CACHE or ~/.cache/nexa-test."""
    return Path(os.environ.get("NEXA_TEST_CACHE", Path.home() / ".cache" / "nexa-test"))


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    make_all(str(out))
    return out


@pytest.fixture(scope="session")
def long_context_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a scripted Qwen3-template chat model trained for 131,072 tokens of context, as agents'
    models are (its KV cache is 512 bytes a token: 64 MiB at full length); import it with import_local."""
    folder = tmp_path_factory.mktemp("long-context")
    make_chat_llm(str(folder / "qwen3-long-context.gguf"), "qwen3", script=["The", " answer", " is", " 42."],
                  n_ctx=131072, template=QWEN3_TEMPLATE)
    return folder


@pytest.fixture(scope="session")
def fake_hub(tiny_dir: Path) -> Iterator[FakeHub]:
    """A local Hugging Face Hub serving tiny models (tests/fixtures/fake_hub.py)."""
    hub = make_test_hub(tiny_dir)
    yield hub
    hub.stop()


@pytest.fixture
def hub_env(fake_hub: FakeHub, tmp_path: Path) -> dict[str, str]:
    """Environment for a `nexa` subprocess: HF_ENDPOINT at the fake Hub, a fresh store in tmp_path/data."""
    return nexa_env(fake_hub, tmp_path / "data", tmp_path / "hf-home")


def import_tiny(store: Store, tiny_dir: Path, name: str, files: list[str], model_type: ModelType | None) -> None:
    folder = tiny_dir / name.replace("/", "__")
    folder.mkdir(exist_ok=True)
    for file in files:
        link = folder / file
        if not link.exists():
            link.symlink_to(tiny_dir / file)
    import_local(store, ModelRef.parse(name), folder, model_type)


@pytest.fixture(scope="session")
def session_store(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> Store:
    store = Store(tmp_path_factory.mktemp("datadir"))
    for name, (files, model_type) in TINY.items():
        import_tiny(store, tiny_dir, name, files, model_type)
    fetch_starter(store, cache_dir() / "wheels")
    import_minilm(store, cache_dir())
    return store


def metric(http: httpx.Client, name: str, **labels: str) -> float:
    """The sum of /metrics' samples of `name` with `labels` (every model's, unless one is named)."""
    return sum(sample.value for family in text_string_to_metric_families(http.get("/metrics").text)
               for sample in family.samples
               if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Most tests need little context: 2 slots sharing 1024 tokens load fast. `engine=()` serves at nexa's defaults.
SMALL_ENGINE = ("--parallel", "2", "--ctx", "1024",
                # An audio window is ~800 tokens: with one KV cache shared by the slots (some of it holding
                # earlier prompts), the audio models get room for one window per slot.
                "--model-option", "test/audio-qwen2a:ctx=4096", "--model-option", "test/audio-loop:ctx=4096")


class ServerProcess:
    """`nexa serve` in a subprocess, as a user runs it. Its output is read as it comes: a pipe nobody
    reads fills up at 64 KiB, and then the server's logging blocks its event loop."""

    def __init__(self, datadir: Path, *args: str, env: dict[str, str] | None = None, host: str = "127.0.0.1",
                 startup_timeout: float = 30.0, engine: tuple[str, ...] = SMALL_ENGINE):
        self.port = free_port()
        self.base_url = f"http://{host}:{self.port}"
        environ = {**os.environ, "NEXA_DATADIR": str(datadir), "NEXA_THREADS": "1", **(env or {})}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nexa", "serve", "--host", host, "--port", str(self.port), *engine, *args],
            env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self._lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self._lines.extend(self.process.stdout), daemon=True)
        self._reader.start()
        self._wait_healthy(startup_timeout)

    @property
    def output(self) -> str:
        """Everything the server printed so far (all of it once stop() returned)."""
        return "".join(self._lines)

    def _wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._reader.join(5)
                raise RuntimeError(f"nexa serve exited early:\n{self.output}")
            try:
                if httpx.get(self.base_url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        self.process.kill()  # no orphan server left behind by a failed start
        self.process.wait()
        raise RuntimeError(f"nexa serve did not become healthy in {timeout:.0f} s")

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code


def worker_pids(datadir: Path, variable: str = "NEXA_DATADIR") -> list[int]:
    """Live worker processes, and llama-server binaries, started for the store at `datadir` (found by their
    inherited NEXA_DATADIR, or another `variable` set to it)."""
    needle = f"{variable}={datadir}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            is_worker = b"nexa.engine.worker" in cmdline or b"llama-server" in cmdline.split(b"\0")[0]
            if is_worker and needle in (proc / "environ").read_bytes().split(b"\0"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


# ------------------------------------------------------------------ runtimes (issue 14)
# Tests marked `parity` run once per runtime: the xllamacpp wheel and a native llama-server built for this
# machine. The native build takes 10-20 minutes on 2 cores, so it is made once per machine, into the test
# cache, by `nexa runtime build --gpu none --data-dir ~/.cache/nexa-test/native` or by a test run with
# NEXA_TEST_BUILD_NATIVE=1; without it the native half of the parity tests is skipped, saying so.
RUNTIMES = ("xllamacpp", "native")


def native_datadir() -> Path:
    return cache_dir() / "native"


def native_binary() -> Path | None:
    """The cached native runtime for this machine, built now if NEXA_TEST_BUILD_NATIVE=1 asks for it."""
    runnable = [r for r in installed(native_datadir()) if r.runs_here() and r.gpu is None]
    if runnable:
        return runnable[0].binary
    if os.environ.get("NEXA_TEST_BUILD_NATIVE") != "1":
        return None
    from nexa.toolchain.build import Reporter, build, plan_for_machine

    return build(native_datadir(), plan_for_machine("none"), Reporter()).binary


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("parity") and "runtime_args" in metafunc.fixturenames:
        metafunc.parametrize("runtime_args", RUNTIMES, indirect=True, scope="session")


@pytest.fixture(scope="session")
def runtime_args(request: pytest.FixtureRequest) -> list[str]:
    """`nexa serve` flags choosing the runtime: none (the default, xllamacpp here) unless a parity test asks."""
    if getattr(request, "param", "xllamacpp") == "xllamacpp":
        return []
    binary = native_binary()
    if binary is None:
        pytest.skip(f"no native runtime cached in {native_datadir()}: run `nexa runtime build --gpu none "
                    f"--data-dir {native_datadir()}` once (10-20 min), or set NEXA_TEST_BUILD_NATIVE=1")
    return ["--runtime", str(binary)]


@pytest.fixture(scope="session")
def server(session_store: Store, runtime_args: list[str]) -> Iterator[ServerProcess]:
    process = ServerProcess(session_store.root, *runtime_args)
    yield process
    process.stop()


@pytest.fixture(scope="session")
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="session")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=60) as http_client:
        yield http_client


@pytest.fixture(scope="session")
def starter_name() -> str:
    return STARTER_NAME
