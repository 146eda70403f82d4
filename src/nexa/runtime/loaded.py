"""A loaded model and a request's lease on it: what the manager keeps per worker, and the rules that read only
that (when it is idle, when keep-alive ends it, when it may give way to another model)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from nexa.engine.spec import WorkerSpec
from nexa.runtime.memory import Footprint
from nexa.runtime.worker import Worker
from nexa.store import Manifest

# A model just loaded stays at least this long, so the requests that waited for the load lease it
# before keep-alive (even 0) can unload it; they resume within microseconds.
LOAD_GRACE = 1.0
# A busy model is drained for another only after serving this many times as long as its load took,
# so under demand for more models than fit, at most a fifth of the time goes to loading.
RESIDENCY = 4.0


@dataclass(eq=False)  # identity: one worker, kept in sets
class LoadedModel:
    id: str  # org/repo:QUANT
    manifest: Manifest
    quant: str
    worker: Worker
    spec: WorkerSpec
    footprint: Footprint = field(default_factory=Footprint)  # as its runtime reported it, else as estimated
    keep_alive: float = 300.0  # seconds idle before unloading; negative keeps it loaded
    in_flight: int = 0
    last_used: float = field(default_factory=time.monotonic)
    started: float = field(default_factory=time.monotonic)
    load_seconds: float = 0.0
    loaded_at: float = field(default_factory=time.time)
    shutting_down: bool = False  # stopped by the shutdown drain: requests it cuts are labelled so
    retired: str | None = None  # why it was taken out of service (idle, evicted, removed ...)
    closing: bool = False  # its worker is being stopped
    stopped: asyncio.Event = field(default_factory=asyncio.Event)  # its worker has stopped (its slots saved)

    def serves(self, manifest: Manifest) -> bool:
        """Whether this worker runs the files `manifest` names now (a re-pull may have replaced them)."""
        return manifest.quants.get(self.quant) == self.manifest.quants[self.quant] and manifest.mmproj == self.manifest.mmproj

    @property
    def parallel(self) -> int:
        return self.spec.parallel

    @property
    def queued(self) -> int:
        """Requests waiting for a free slot: in its engine's queue, or on a cluster, for any of its replicas."""
        return max(0, self.in_flight - self.worker.slots)

    def drainable(self, now: float) -> bool:
        """Whether it may be taken out of service for another model: its waiters have leased it, and
        if busy, it has served long enough to be worth its load."""
        residency = LOAD_GRACE if not self.in_flight else max(LOAD_GRACE, RESIDENCY * self.load_seconds)
        return now >= self.started + residency

    def idle_seconds(self, now: float) -> float:
        return 0.0 if self.in_flight else max(0.0, now - self.last_used)

    def expires_at(self) -> float | None:
        """When keep-alive unloads it: never while leased or with a negative keep-alive."""
        if self.in_flight or self.keep_alive < 0:
            return None
        return max(self.last_used + self.keep_alive, self.started + LOAD_GRACE)


class Lease:
    """A request's hold on a loaded model; the model is not unloaded while any lease is open."""

    def __init__(self, model: LoadedModel, on_release: Callable[[LoadedModel], None] = lambda model: None):
        self.model = model
        self._on_release = on_release
        self._open = True
        model.in_flight += 1

    @property
    def worker(self) -> Worker:
        return self.model.worker

    def release(self) -> None:
        if self._open:
            self._open = False
            self.model.in_flight -= 1
            self.model.last_used = time.monotonic()
            self._on_release(self.model)

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()
