"""ModelManager: the one owner of loaded models.

It resolves names, loads on demand (concurrent first requests share one load), keeps
each model within the memory budget by unloading the least recently used idle ones,
unloads models idle past their keep-alive, and restarts crashed workers with back-off.
All timing lives in one supervisor task that sleeps until the next keep-alive deadline
or until something changes (a lease released, a worker exited).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from nexa.config import Settings
from nexa.engine.spec import WorkerSpec
from nexa.errors import ModelLoadFailed, Overloaded
from nexa.runtime import memory
from nexa.runtime.worker import Worker
from nexa.store import Manifest, ModelRef, Store

log = logging.getLogger("nexa.manager")

WorkerFactory = Callable[[WorkerSpec], Worker]
Estimator = Callable[[WorkerSpec, int], int]

# A worker that ran this long before dying was healthy: its crash starts the back-off afresh.
STABLE_AFTER = 60.0
# A model just loaded stays at least this long, so the requests that waited for the load lease it
# before keep-alive (even 0) can unload it; they resume within microseconds.
LOAD_GRACE = 1.0
MAX_BACKOFF = 60.0
GIB = 1024**3


def backoff(failures: int) -> float:
    """Seconds to wait before the next try after `failures` in a row: 0, 1, 2, 4 ... 60."""
    return 0.0 if failures <= 1 else min(MAX_BACKOFF, 2.0 ** (failures - 2))


def _gib(n: int) -> str:
    return f"{n / GIB:.2f} GiB"


@dataclass
class LoadedModel:
    id: str  # org/repo:QUANT
    manifest: Manifest
    quant: str
    worker: Worker
    spec: WorkerSpec
    estimate: int = 0  # bytes, from nexa.runtime.memory.estimate
    keep_alive: float = 300.0  # seconds idle before unloading; negative keeps it loaded
    in_flight: int = 0
    last_used: float = field(default_factory=time.monotonic)
    started: float = field(default_factory=time.monotonic)
    loaded_at: float = field(default_factory=time.time)
    shutting_down: bool = False  # stopped by the shutdown drain: requests it cuts are labelled so

    @property
    def parallel(self) -> int:
        return self.spec.parallel

    @property
    def queued(self) -> int:
        """Requests waiting in the engine's queue for a free slot."""
        return max(0, self.in_flight - self.parallel)

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


@dataclass
class _Failures:
    """Consecutive failures of one model (crashes or failed loads), for the back-off."""

    count: int
    at: float
    reason: str
    crashed: bool

    def retry_in(self, now: float) -> float:
        return self.at + backoff(self.count) - now


@dataclass
class ManagerStats:
    """Event counts since start, read by /metrics. Keys are model ids (unloads: (model id, reason))."""

    loads: Counter = field(default_factory=Counter)
    load_failures: Counter = field(default_factory=Counter)
    unloads: Counter = field(default_factory=Counter)
    crashes: Counter = field(default_factory=Counter)
    restarts: Counter = field(default_factory=Counter)


class ModelManager:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        worker_factory: WorkerFactory = Worker,
        estimator: Estimator = memory.estimate,
    ):
        self.store = store
        self.settings = settings
        self.stats = ManagerStats()
        self._worker_factory = worker_factory
        self._estimate = estimator
        self._loaded: dict[str, LoadedModel] = {}
        self._loading: dict[str, asyncio.Task[LoadedModel]] = {}
        self._reserved: dict[str, int] = {}  # estimates of models being loaded
        self._failures: dict[str, _Failures] = {}
        self._admission = asyncio.Lock()  # one eviction decision at a time
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False
        self._stopping: asyncio.Future[None] | None = None  # the close() that drain() schedules

    # ------------------------------------------------------------------ queries

    def resolve(self, name: str) -> tuple[Manifest, str]:
        return self.store.resolve(ModelRef.parse(name))

    def loaded(self) -> list[LoadedModel]:
        return list(self._loaded.values())

    @property
    def memory_budget(self) -> int:
        return int(self.settings.memory_budget)

    def memory_used(self) -> int:
        """Estimated bytes held by loaded models and reserved by loads under way."""
        return sum(m.estimate for m in self._loaded.values()) + sum(self._reserved.values())

    def ctx_for(self, manifest: Manifest, quant: str) -> int:
        """Context tokens per slot of `manifest:quant`, its --model-option included."""
        return self.settings.options_for(manifest.name, quant).ctx or self.settings.ctx

    def spec(self, manifest: Manifest, quant: str) -> WorkerSpec:
        """How `manifest:quant` would be started: serve-wide settings with its --model-option overrides."""
        folder = self.store.model_dir(manifest.name)
        options = self.settings.options_for(manifest.name, quant)
        return WorkerSpec(
            model_path=str(manifest.quants[quant].files[0].location(folder)),
            mmproj_path=str(manifest.mmproj.location(folder)) if manifest.mmproj else None,
            model_type=manifest.model_type,
            alias=f"{manifest.name}:{quant}",
            ctx=self.ctx_for(manifest, quant),
            parallel=options.parallel or self.settings.parallel,
            threads=options.threads or self.settings.threads,
            ngl=self.settings.ngl if options.ngl is None else options.ngl,
            reasoning_format=self.settings.reasoning_format,
            api_key=Worker.new_api_key(),
        )

    # ------------------------------------------------------------------ leasing

    async def start(self) -> None:
        """Start the supervisor and load the --preload models; a preload that fails is logged, not fatal."""
        self._ensure_supervisor()
        for name in self.settings.preload:
            try:
                manifest, quant = self.resolve(name)
                (await self.acquire(manifest, quant)).release()
            except Exception as exc:  # noqa: BLE001 - the server must come up to serve the other models
                log.error("could not preload %s: %s", name, getattr(exc, "message", exc))

    async def acquire(self, manifest: Manifest, quant: str, keep_alive: float | None = None) -> Lease:
        """Lease a resolved model, loading it first if needed; `keep_alive` (seconds) replaces its keep-alive."""
        self._ensure_supervisor()
        if self._closing:
            raise Overloaded("the server is shutting down; retry once it is back", retry_after=5, code="server_shutting_down")
        model_id = f"{manifest.name}:{quant}"
        model = self._loaded.get(model_id)
        if model is not None and not model.worker.alive:
            await self._crashed(model)
            model = None
        if model is None:
            task = self._loading.get(model_id)
            if task is None:
                self._check_backoff(model_id)
                task = asyncio.create_task(self._load(model_id, manifest, quant))
                self._loading[model_id] = task
                task.add_done_callback(lambda done: self._load_done(model_id, done))
            # Shielded: a client that disconnects while its model loads must not abort the load for the others.
            model = await asyncio.shield(task)
        if keep_alive is not None:
            model.keep_alive = keep_alive
        return Lease(model, self._released)

    def _load_done(self, model_id: str, task: asyncio.Task[LoadedModel]) -> None:
        self._loading.pop(model_id, None)
        if not task.cancelled():
            task.exception()  # retrieved here too, in case every waiting request went away

    def _released(self, model: LoadedModel) -> None:
        if model.in_flight == 0:
            self._notify()

    def _check_backoff(self, model_id: str) -> None:
        failures = self._failures.get(model_id)
        if failures is None:
            return
        wait = failures.retry_in(time.monotonic())
        if wait > 0:
            raise Overloaded(
                f"model '{model_id}' {failures.reason}, {failures.count} times in a row; nexa tries again in "
                f"{math.ceil(wait)} s (the back-off doubles with each failure; check the server log)",
                retry_after=math.ceil(wait),
                code="model_backoff",
            )

    # ------------------------------------------------------------------ loading

    async def _load(self, model_id: str, manifest: Manifest, quant: str) -> LoadedModel:
        spec = self.spec(manifest, quant)
        weights = manifest.quants[quant].size + (manifest.mmproj.size if manifest.mmproj else 0)
        need = await asyncio.to_thread(self._estimate, spec, weights)  # parses the GGUF header: off the loop
        async with self._admission:
            await self._make_room(model_id, need)
            self._reserved[model_id] = need
        worker = self._worker_factory(spec)
        log.info("loading %s (about %s)", model_id, _gib(need))
        started = time.monotonic()
        try:
            await worker.start(self.settings.load_timeout)
        except ModelLoadFailed as exc:
            self.stats.load_failures[model_id] += 1
            reason = f"failed to load: {exc.message}"
            self._record_failure(model_id, reason, crashed=False)
            raise ModelLoadFailed(f"model '{model_id}' {reason}", code="model_load_failed") from exc
        except BaseException:  # cancelled by shutdown: leave no process behind
            await worker.close()
            raise
        finally:
            self._reserved.pop(model_id, None)
        log.info("loaded %s in %.2f s (pid %s)", model_id, time.monotonic() - started, worker.pid)
        model = LoadedModel(
            id=model_id, manifest=manifest, quant=quant, worker=worker, spec=spec, estimate=need,
            keep_alive=self.settings.keepalive,
        )
        self.stats.loads[model_id] += 1
        failures = self._failures.get(model_id)
        if failures is not None and failures.crashed:
            self.stats.restarts[model_id] += 1
        self._loaded[model_id] = model
        asyncio.ensure_future(worker.wait()).add_done_callback(lambda _: self._notify())
        self._notify()
        return model

    async def _make_room(self, model_id: str, need: int) -> None:
        """Unload least recently used idle models until `need` more bytes (and one more model) fit."""
        budget, limit = self.memory_budget, self.settings.max_loaded_models
        if need > budget:
            raise Overloaded(
                f"model '{model_id}' needs about {_gib(need)}, more than the whole memory budget of {_gib(budget)}; "
                f"raise --memory-budget or give it a smaller context (--model-option {model_id}:ctx=2048,parallel=1)",
                code="memory_budget",
            )
        idle = sorted((m for m in self._loaded.values() if m.in_flight == 0), key=lambda m: m.last_used)
        used, count = self.memory_used(), len(self._loaded) + len(self._reserved)
        victims: list[LoadedModel] = []
        while (used + need > budget or (limit and count >= limit)) and len(victims) < len(idle):
            victim = idle[len(victims)]
            victims.append(victim)
            used -= victim.estimate
            count -= 1
        if used + need > budget or (limit and count >= limit):
            busy = ", ".join(f"{m.id} ({_gib(m.estimate)})" for m in self._loaded.values() if m.in_flight)
            raise Overloaded(
                f"cannot load '{model_id}' (about {_gib(need)}): {_gib(used)} of the {_gib(budget)} memory budget"
                + (f" and {count} of {limit} model places" if limit else "")
                + f" are held by models serving requests ({busy or 'loads under way'}); retry when they finish, "
                "or raise --memory-budget / --max-loaded-models",
                retry_after=5,
                code="memory_budget",
            )
        for victim in victims:  # all detached before the first await, so none can be leased meanwhile
            log.info("unloading %s to make room for %s", victim.id, model_id)
            self._detach(victim, "evicted")
        await asyncio.gather(*(victim.worker.close() for victim in victims))

    def _record_failure(self, model_id: str, reason: str, *, crashed: bool, healthy: bool = False) -> None:
        previous = self._failures.get(model_id)
        count = 1 if previous is None or healthy else previous.count + 1
        self._failures[model_id] = _Failures(count, time.monotonic(), reason, crashed)

    # ------------------------------------------------------------------ unloading

    async def load(self, manifest: Manifest, quant: str, keep_alive: float | None = None) -> LoadedModel:
        """Load without serving a request (admin API, --preload)."""
        async with await self.acquire(manifest, quant, keep_alive) as lease:
            return lease.model

    async def unload(self, model_id: str) -> bool:
        """Unload now if idle (True); a model serving requests unloads when they finish (False)."""
        model = self._loaded.get(model_id)
        if model is None:
            return True
        if model.in_flight:
            model.keep_alive = 0
            self._notify()
            return False
        await self._unload(model, "request")
        return True

    def _detach(self, model: LoadedModel, reason: str) -> bool:
        """Take a model out of service (no new leases); False if it already was."""
        if self._loaded.get(model.id) is not model:
            return False
        del self._loaded[model.id]
        self._failures.pop(model.id, None)  # it ran until asked to stop: its history is clean
        self.stats.unloads[model.id, reason] += 1
        log.info("unloading %s (%s)", model.id, reason)
        return True

    async def _unload(self, model: LoadedModel, reason: str) -> None:
        if self._detach(model, reason):
            await model.worker.close()

    async def _crashed(self, model: LoadedModel) -> None:
        """Forget a worker that exited by itself; the next request restarts it (after the back-off)."""
        if self._loaded.get(model.id) is not model:
            return
        del self._loaded[model.id]
        uptime = time.monotonic() - model.started
        code = model.worker.returncode
        self.stats.crashes[model.id] += 1
        self._record_failure(model.id, f"crashed (worker exit code {code})", crashed=True, healthy=uptime >= STABLE_AFTER)
        log.warning("worker for %s (pid %s) exited with code %s; it restarts on the next request",
                    model.id, model.worker.pid, code)
        await model.worker.close()

    # ------------------------------------------------------------------ supervision

    def _ensure_supervisor(self) -> None:
        if self._supervisor is None and not self._closing:
            self._loop = asyncio.get_running_loop()
            self._supervisor = asyncio.create_task(self._supervise(), name="nexa-supervisor")

    def _notify(self) -> None:
        """Wake the supervisor; safe from any thread (a lease may be released off the loop)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def _supervise(self) -> None:
        """Reap exited workers and unload models idle past their keep-alive, then sleep until the next deadline."""
        while True:
            self._wake.clear()
            try:
                await self._sweep()
            except Exception:  # a failure to stop one worker must not end supervision of the others
                log.exception("supervisor sweep failed")
            deadlines = [e for m in self._loaded.values() if (e := m.expires_at()) is not None]
            alarm = None
            if deadlines:
                alarm = asyncio.get_running_loop().call_later(max(0.0, min(deadlines) - time.monotonic()), self._wake.set)
            try:
                await self._wake.wait()
            finally:
                if alarm is not None:
                    alarm.cancel()

    async def _sweep(self) -> None:
        for model in list(self._loaded.values()):
            if not model.worker.alive:
                await self._crashed(model)
        now = time.monotonic()
        for model in list(self._loaded.values()):
            expires = model.expires_at()  # checked right before detaching: no await in between
            if expires is not None and expires <= now:
                await self._unload(model, "idle")

    def drain(self, grace: float) -> None:
        """Shutdown has begun (safe from a signal handler): refuse new leases now, and stop the workers after
        `grace` seconds, so requests still running then end with an error instead of hanging on."""
        if self._loop is None or self._loop.is_closed():
            return
        self._closing = True
        self._loop.call_soon_threadsafe(self._loop.call_later, grace, self._stop_soon)

    def _stop_soon(self) -> None:
        self._stopping = asyncio.ensure_future(self.close())

    async def close(self) -> None:
        """Refuse new leases and stop every worker; called on shutdown."""
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        for task in list(self._loading.values()):
            task.cancel()
        await asyncio.gather(*self._loading.values(), return_exceptions=True)
        for model in self._loaded.values():
            model.shutting_down = True
        await asyncio.gather(*(self._unload(m, "shutdown") for m in list(self._loaded.values())))
