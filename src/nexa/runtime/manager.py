"""ModelManager: the one owner of loaded models.

It resolves names, loads on demand (concurrent first requests share one load), keeps
each model within the memory budget by unloading the least recently used idle ones,
unloads models idle past their keep-alive, and restarts crashed workers with back-off.

Requests beyond a loaded model's slots (on a cluster, all its replicas' slots) wait in its engine's FIFO
queue (or Serve's), at most --max-waiting of them; the next gets a 503 with Retry-After instead of holding
two more sockets in the router.
A load that does not fit waits its turn (FIFO, bounded by --max-queue and --queue-timeout)
instead of failing: the head of the queue takes the least recently used models out of
service, and each closes once the requests it is serving end; a model is never stopped
under a running request. A model removed from the store or replaced by other files is
taken out of service the same way, so no request is answered from files that are gone.

All timing lives in one supervisor task that sleeps until the next keep-alive deadline,
the next store check, or until something changes (a lease released, a worker exited).
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
from nexa.errors import ModelLoadFailed, Overloaded, StoreError, shutting_down
from nexa.runtime import memory, slot_cache
from nexa.runtime.accelerators import accelerators
from nexa.runtime.admission import Budgets, eviction_order
from nexa.runtime.loaded import LOAD_GRACE, Lease, LoadedModel
from nexa.runtime.memory import Footprint
from nexa.runtime.planning import Accelerators, Estimator, Planner
from nexa.runtime.worker import Worker
from nexa.store import Manifest, ModelRef, Store

log = logging.getLogger("nexa.manager")

WorkerFactory = Callable[[WorkerSpec], Worker]

# A worker that ran this long before dying was healthy: its crash starts the back-off afresh.
STABLE_AFTER = 60.0
MAX_BACKOFF = 60.0
# Seconds between checks that each loaded model's files are still those in the store.
STORE_CHECK = 2.0


def backoff(failures: int) -> float:
    """Seconds to wait before the next try after `failures` in a row: 0, 1, 2, 4 ... 60."""
    return 0.0 if failures <= 1 else min(MAX_BACKOFF, 2.0 ** (failures - 2))


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
        gpus: Accelerators = accelerators,
    ):
        self.store = store
        self.settings = settings
        self.stats = ManagerStats()
        self.planner = Planner(store, settings, estimator, gpus)
        self._worker_factory = worker_factory
        self._loaded: dict[str, LoadedModel] = {}
        self._retiring: set[LoadedModel] = set()  # out of service; each closes once its requests end
        self._loading: dict[str, asyncio.Task[LoadedModel]] = {}
        self._waiting: Counter[str] = Counter()  # requests waiting for each load under way
        self._reserved: dict[str, Footprint] = {}  # estimates of models being loaded
        self._failures: dict[str, _Failures] = {}
        self._admission = asyncio.Lock()  # the queue for room: FIFO, one eviction decision at a time
        self._room = asyncio.Event()  # set when a model became idle or closed
        self._wake = asyncio.Event()
        self._store_checked = 0.0  # when the supervisor last compared loaded models with the store
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
        return self.planner.memory_budget

    def waiting(self) -> int:
        """Requests waiting for a model to load (and for room to load it)."""
        return sum(self._waiting.values())

    @property
    def closing(self) -> bool:
        """Shutdown has begun: no new leases (long-lived streams such as the web UI's feed end now)."""
        return self._closing

    def loading(self) -> list[str]:
        """Ids of the models whose load is under way (the web UI shows them as loading)."""
        return list(self._loading)

    def failures(self) -> dict[str, tuple[str, int]]:
        """Why each model in back-off last failed to load or crashed, and how many times in a row."""
        return {model_id: (f.reason, f.count) for model_id, f in self._failures.items()}

    def find_loaded(self, name: str) -> list[LoadedModel]:
        """Loaded models called `name` (org/repo or org/repo:QUANT, any case), even if gone from the store."""
        ref = ModelRef.parse(name)
        return [m for m in self._loaded.values()
                if m.manifest.name.lower() == ref.repo.lower() and ref.quant in (None, m.quant)]

    def device_budgets(self) -> dict[str, int]:
        return self.planner.device_budgets()

    def memory_used(self) -> Footprint:
        """What models hold (loaded or still closing) and loads under way have reserved, in RAM and per GPU."""
        held = [*self._loaded.values(), *self._retiring]
        return memory.total([*(m.footprint for m in held), *self._reserved.values()])

    def _places_used(self) -> int:
        return len(self._loaded) + len(self._retiring) + len(self._reserved)

    def planned_context(self, manifest: Manifest, quant: str) -> int:
        """The context `manifest:quant` gets: its loaded worker's, else what a load would give it now (see
        spec(): call it off the event loop)."""
        model = self._loaded.get(f"{manifest.name}:{quant}")
        return model.spec.ctx if model is not None else self.planner.spec(manifest, quant).ctx

    async def context_for(self, manifest: Manifest, quant: str) -> int:
        """planned_context(), from the event loop."""
        model = self._loaded.get(f"{manifest.name}:{quant}")
        if model is not None:
            return model.spec.ctx
        return await asyncio.to_thread(self.planned_context, manifest, quant)

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
            raise shutting_down()
        model_id = f"{manifest.name}:{quant}"
        model = self._loaded.get(model_id)
        if model is not None and not model.worker.alive:
            await self._crashed(model)
            model = None
        if model is not None and not model.serves(manifest):
            await self._retire(model, "replaced")
            model = None
        if model is None:
            model = await self._wait_for_load(model_id, manifest, quant)
        if model.queued >= self.settings.max_waiting:
            raise Overloaded(
                f"{model.queued} requests are already waiting for a free slot of '{model_id}' (--max-waiting "
                f"{self.settings.max_waiting}; all {model.worker.slots} of its slots are busy); retry shortly",
                retry_after=5, code="queue_full",
            )
        if keep_alive is not None:
            model.keep_alive = keep_alive
        return Lease(model, self._released)

    async def _wait_for_load(self, model_id: str, manifest: Manifest, quant: str) -> LoadedModel:
        """Join the load of `model_id` under way, or start one. Waiting requests are bounded by --max-queue;
        when the last one gives up before the load has room, the load is dropped: a client that left costs nothing."""
        if self.waiting() >= self.settings.max_queue:
            raise Overloaded(
                f"{self.settings.max_queue} requests are already waiting for models to load (--max-queue); "
                "retry shortly", retry_after=5, code="queue_full",
            )
        task = self._loading.get(model_id)
        if task is None:
            self._check_backoff(model_id)
            task = asyncio.create_task(self._load(model_id, manifest, quant))
            self._loading[model_id] = task
            task.add_done_callback(lambda done: self._load_done(model_id, done))
        self._waiting[model_id] += 1
        try:
            # Shielded: a client that disconnects while its model loads must not abort the load for the others.
            return await asyncio.shield(task)
        finally:
            self._waiting[model_id] -= 1
            if not self._waiting[model_id]:
                del self._waiting[model_id]
                if model_id not in self._reserved and not task.done():
                    del self._loading[model_id]  # a request arriving now starts afresh
                    task.cancel()  # still queued for room: nobody wants it any more

    def _load_done(self, model_id: str, task: asyncio.Task[LoadedModel]) -> None:
        if self._loading.get(model_id) is task:
            del self._loading[model_id]
        if not task.cancelled():
            task.exception()  # retrieved here too, in case every waiting request went away

    def _released(self, model: LoadedModel) -> None:
        if model.in_flight == 0:
            self._notify()  # it may be unloaded now, or give way to a queued load

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
        spec, need, sizes = await asyncio.to_thread(self.planner.plan, manifest, quant)
        self.planner.saw(sizes)
        await self._admit(model_id, need)
        worker = self._worker_factory(spec)
        log.info("loading %s (about %s; context %d tokens, %s KV cache)", model_id, need.describe(), spec.ctx,
                 spec.kv_cache_type)
        started = time.monotonic()
        try:
            for previous in [m for m in self._retiring if m.id == model_id and m.closing]:
                await previous.stopped.wait()  # it is saving the prompt caches that this load restores
            saved = await slot_cache.saved_for(worker)
            await worker.start(self.settings.load_timeout)
            await slot_cache.restore_for(worker, saved)
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
        took = time.monotonic() - started
        footprint = worker.footprint() or need
        log.info("loaded %s in %.2f s (pid %s; holds %s)", model_id, took, worker.pid, footprint.describe())
        model = LoadedModel(
            id=model_id, manifest=manifest, quant=quant, worker=worker, spec=spec, footprint=footprint,
            keep_alive=self.settings.keepalive, load_seconds=took,
        )
        self.stats.loads[model_id] += 1
        failures = self._failures.get(model_id)
        if failures is not None and failures.crashed:
            self.stats.restarts[model_id] += 1
        self._loaded[model_id] = model
        asyncio.ensure_future(worker.wait()).add_done_callback(lambda _: self._notify())
        self._notify()
        return model

    async def _admit(self, model_id: str, need: Footprint) -> None:
        """Wait, first come first served, until `need` (in RAM and on each GPU) and one more model fit; then
        reserve it. Gives up with 503 after --queue-timeout seconds."""
        budgets = self._budgets()
        if (too_big := budgets.too_big(model_id, need)) is not None:
            raise too_big
        deadline = time.monotonic() + self.settings.queue_timeout
        try:
            await asyncio.wait_for(self._admission.acquire(), self.settings.queue_timeout)
        except asyncio.TimeoutError:
            raise self._no_room(model_id, need) from None
        draining: list[LoadedModel] = []
        try:
            while not await self._make_room(model_id, need, draining):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._no_room(model_id, need)
                try:  # re-checked at least each LOAD_GRACE: a model may have become drainable
                    await asyncio.wait_for(self._room.wait(), min(left, LOAD_GRACE))
                except asyncio.TimeoutError:
                    pass
            self._reserved[model_id] = need
        except BaseException:  # timed out, or every waiting client left: what it drained serves on
            self._restore(draining)
            raise
        finally:
            self._admission.release()

    async def _make_room(self, model_id: str, need: Footprint, draining: list[LoadedModel]) -> bool:
        """Take models out of service (nexa.runtime.admission chooses them) if that makes `need` fit once they
        close: idle ones close now, busy ones when their requests end (added to `draining`). True if it fits now."""
        self._room.clear()
        victims = self._budgets().victims(eviction_order(self._loaded.values(), time.monotonic()), need,
                                          self.memory_used(), self._places_used())
        for victim in victims:
            log.info("%s %s to make room for %s", "retiring (after its requests end)" if victim.in_flight
                     else "unloading", victim.id, model_id)
        draining += [victim for victim in victims if victim.in_flight]
        await asyncio.gather(*(self._retire(victim, "evicted") for victim in victims))
        return self._budgets().fits(need, self.memory_used(), self._places_used())

    def _budgets(self) -> Budgets:
        return Budgets(self.memory_budget, self.device_budgets(), self.settings.max_loaded_models)

    def _restore(self, models: list[LoadedModel]) -> None:
        """Put drained models that are still serving back in service, unless a new load of theirs is under way."""
        for model in models:
            if model in self._retiring and not model.closing and model.id not in self._loaded \
                    and model.id not in self._loading:
                self._retiring.discard(model)
                self._loaded[model.id] = model
                model.retired = None
                log.info("%s serves on: the load it made room for was given up", model.id)

    def _no_room(self, model_id: str, need: Footprint) -> Overloaded:
        return self._budgets().no_room(model_id, need, self.memory_used(), self._places_used(),
                                       [*self._loaded.values(), *self._retiring], self.settings.queue_timeout)

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
        await self._retire(model, "request")
        return True

    async def _retire(self, model: LoadedModel, reason: str) -> None:
        """Take a model out of service: no new leases; its worker stops now if idle, else when its requests end."""
        if self._detach(model, reason):
            self._retiring.add(model)
        if not model.in_flight:
            await self._close(model)

    async def _close(self, model: LoadedModel) -> None:
        if model.closing:
            return
        model.closing = True
        if model.retired:
            self.stats.unloads[model.id, model.retired] += 1
            log.info("unloading %s (%s)", model.id, model.retired)
        try:
            await slot_cache.save_for(model.worker, self.store.root / slot_cache.FOLDER,
                                      int(self.settings.prompt_cache_disk))
            await model.worker.close()
        finally:
            self._retiring.discard(model)
            model.stopped.set()
            self._room.set()

    def _detach(self, model: LoadedModel, reason: str) -> bool:
        """Take a model out of service (no new leases); False if it already was."""
        if self._loaded.get(model.id) is not model:
            return False
        del self._loaded[model.id]
        self._failures.pop(model.id, None)  # it ran until asked to stop: its history is clean
        model.retired = reason
        return True

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
        await self._close(model)

    # ------------------------------------------------------------------ supervision

    def _ensure_supervisor(self) -> None:
        if self._supervisor is None and not self._closing:
            self._loop = asyncio.get_running_loop()
            self._supervisor = asyncio.create_task(self._supervise(), name="nexa-supervisor")

    def _notify(self) -> None:
        """Wake the supervisor and the queue for room; safe from any thread (a lease may be released off the loop)."""
        if self._loop is None or self._loop.is_closed():
            return
        if _running_loop() is self._loop:  # most releases: set them now, with no wake-up through the loop's pipe
            self._wake.set()
            self._room.set()
        else:
            self._loop.call_soon_threadsafe(self._wake.set)
            self._loop.call_soon_threadsafe(self._room.set)

    async def _supervise(self) -> None:
        """Reap exited workers and unload models idle past their keep-alive, then sleep until the next deadline."""
        while True:
            self._wake.clear()
            try:
                await self._sweep()
            except Exception:  # a failure to stop one worker must not end supervision of the others
                log.exception("supervisor sweep failed")
            deadlines = [e for m in self._loaded.values() if (e := m.expires_at()) is not None]
            if self._loaded:
                deadlines.append(time.monotonic() + STORE_CHECK)
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
        if time.monotonic() >= self._store_checked + STORE_CHECK:
            self._store_checked = time.monotonic()
            for model, reason in await asyncio.to_thread(self._gone_from_store, list(self._loaded.values())):
                log.info("%s was %s in the store; it stops serving once its requests end", model.id, reason)
                await self._retire(model, reason)
        for model in [m for m in self._retiring if not m.in_flight]:
            await self._close(model)
        now = time.monotonic()
        for model in list(self._loaded.values()):
            expires = model.expires_at()  # checked right before detaching: no await in between
            if expires is not None and expires <= now:
                await self._retire(model, "idle")

    def _gone_from_store(self, models: list[LoadedModel]) -> list[tuple[LoadedModel, str]]:
        """The models whose files the store no longer names (removed, or replaced by a new pull)."""
        gone = []
        for model in models:
            try:
                manifest = self.store.get(model.manifest.name)
            except StoreError:
                continue  # a manifest being rewritten by a pull: look again next time
            if manifest is None or model.quant not in manifest.quants:
                gone.append((model, "removed"))
            elif not model.serves(manifest):
                gone.append((model, "replaced"))
        return gone

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
        for model in list(self._loaded.values()):
            self._detach(model, "shutdown")
            self._retiring.add(model)
        for model in self._retiring:
            model.shutting_down = True
        await asyncio.gather(*(self._close(m) for m in list(self._retiring)))


def _running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop of the calling thread, if it runs one."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
