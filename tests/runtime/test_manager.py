"""ModelManager with fake workers injected: loading, keep-alive, memory budget, crashes, back-off, shutdown."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from nexa.config import Settings
from nexa.errors import ModelLoadFailed, Overloaded
from nexa.runtime import ModelManager
from nexa.runtime.accelerators import Accelerator
from nexa.runtime.memory import Footprint
from nexa.store import FileEntry, Manifest, ModelRef, ModelType, QuantEntry, Store

pytestmark = pytest.mark.anyio
_pids = itertools.count(1000)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeWorker:
    """Stands in for nexa.runtime.Worker: no process; `crash()` plays a kill -9."""

    def __init__(self, spec, fail: str | None = None, gate: asyncio.Event | None = None):
        self.spec = spec
        self.base_url = "http://fake"
        self.headers: dict[str, str] = {}
        self.pid = next(_pids)
        self.returncode: int | None = None
        self._started = False
        self._fail = fail
        self._gate = gate
        self._exited = asyncio.Event()
        self.reported: Footprint | None = None  # what its engine says it allocated

    def footprint(self) -> Footprint | None:
        return self.reported

    @property
    def alive(self) -> bool:
        return self._started and self.returncode is None

    @property
    def slots(self) -> int:
        return self.spec.parallel

    async def start(self, timeout: float) -> None:
        if self._gate is not None:
            await self._gate.wait()
        if self._fail:
            raise ModelLoadFailed(self._fail)
        self._started = True

    async def wait(self) -> int:
        await self._exited.wait()
        return self.returncode

    async def close(self) -> None:
        if self.returncode is None:
            self.returncode = 0
        self._exited.set()

    def crash(self) -> None:
        self.returncode = -9
        self._exited.set()


class Factory:
    def __init__(self):
        self.workers: list[FakeWorker] = []
        self.failing: dict[str, str] = {}  # model path -> load error
        self.gate: asyncio.Event | None = None

    def __call__(self, spec) -> FakeWorker:
        worker = FakeWorker(spec, self.failing.get(spec.model_path), self.gate)
        self.workers.append(worker)
        return worker


def manifest(name: str, size: int = 100) -> Manifest:
    files = [FileEntry(name=name.split("/")[1] + ".gguf", size=size, sha256="0" * 64)]
    return Manifest(name=name, model_type=ModelType.llm, quants={"Q4_0": QuantEntry(files=files)}, source="test")


A, B, C = manifest("t/a"), manifest("t/b"), manifest("t/c")


def by_size(spec, weights: int, gpus: dict[str, int]) -> Footprint:
    """Each model's estimate is its file size, so budgets are easy to reason about; with a GPU and ngl other
    than 0 it all goes on the first GPU but 10 bytes."""
    if gpus and spec.ngl != 0:
        return Footprint(10, {next(iter(gpus)): weights})
    return Footprint(weights)


def make_manager(tmp_path, factory: Factory, gpus: tuple[Accelerator, ...] = (), models=(), **settings):
    """A, B and C (and `models`) are in the store; `gpus` are what every runtime reports. The fakes have no engine
    to save their slots to disk (tests/server/test_saved_prompt_cache.py covers that)."""
    config = Settings(datadir=tmp_path, **{"memory_budget": 1000, "keepalive": 300, "prompt_cache_disk": 0, **settings})
    store = Store(tmp_path)
    for model in (A, B, C, *models):
        store.save(model)
    return ModelManager(store, config, worker_factory=factory, estimator=by_size, gpus=lambda runtime: gpus)


async def until(condition, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def ids(manager: ModelManager) -> set[str]:
    return {m.id for m in manager.loaded()}


async def test_concurrent_first_requests_share_one_load(tmp_path):
    factory = Factory()
    factory.gate = asyncio.Event()
    manager = make_manager(tmp_path, factory)
    pending = [asyncio.create_task(manager.acquire(A, "Q4_0")) for _ in range(8)]
    await asyncio.sleep(0.01)
    factory.gate.set()
    leases = await asyncio.gather(*pending)
    assert len(factory.workers) == 1 and {lease.model.in_flight for lease in leases} == {8}
    for lease in leases:
        lease.release()
    await manager.close()


async def test_a_reload_waits_until_the_previous_worker_has_stopped(tmp_path):
    """On its way out an engine saves its slots' prompt caches, which the next load of the model restores."""
    factory = Factory()
    manager = make_manager(tmp_path, factory)
    (await manager.acquire(A, "Q4_0")).release()
    first, saved = factory.workers[0], asyncio.Event()
    stop = first.close

    async def saving_then_stopping() -> None:
        await saved.wait()
        await stop()

    first.close = saving_then_stopping
    unload = asyncio.create_task(manager.unload("t/a:Q4_0"))
    reload = asyncio.create_task(manager.acquire(A, "Q4_0"))
    await until(lambda: len(factory.workers) == 2)
    await asyncio.sleep(0.05)
    assert not factory.workers[1].alive and first.returncode is None
    saved.set()
    (await reload).release()
    assert await unload and first.returncode == 0 and factory.workers[1].alive


async def test_idle_model_unloads_after_keepalive(tmp_path):
    factory = Factory()
    manager = make_manager(tmp_path, factory, keepalive=0.05)
    (await manager.acquire(A, "Q4_0")).release()
    await until(lambda: not manager.loaded())
    assert manager.stats.unloads["t/a:Q4_0", "idle"] == 1 and factory.workers[0].returncode == 0
    await manager.close()


async def test_model_is_kept_while_a_request_is_in_flight(tmp_path):
    manager = make_manager(tmp_path, Factory(), keepalive=0)
    lease = await manager.acquire(A, "Q4_0")
    await asyncio.sleep(0.05)
    assert ids(manager) == {"t/a:Q4_0"}
    lease.release()
    await until(lambda: not manager.loaded())
    await manager.close()


async def test_request_keep_alive_zero_unloads_after_it_and_minus_one_keeps(tmp_path):
    manager = make_manager(tmp_path, Factory(), keepalive=0.05)
    (await manager.acquire(A, "Q4_0", keep_alive=0)).release()
    (await manager.acquire(B, "Q4_0", keep_alive=-1)).release()
    await until(lambda: ids(manager) == {"t/b:Q4_0"})
    await asyncio.sleep(0.1)
    assert ids(manager) == {"t/b:Q4_0"}
    await manager.close()


async def test_least_recently_used_idle_model_is_evicted_to_fit_the_budget(tmp_path):
    manager = make_manager(tmp_path, Factory(), memory_budget=250)
    (await manager.acquire(A, "Q4_0")).release()
    (await manager.acquire(B, "Q4_0")).release()
    (await manager.acquire(A, "Q4_0")).release()  # a is now the more recently used
    (await manager.acquire(C, "Q4_0")).release()
    assert ids(manager) == {"t/a:Q4_0", "t/c:Q4_0"}
    assert manager.stats.unloads["t/b:Q4_0", "evicted"] == 1
    await manager.close()


async def test_a_load_that_does_not_fit_waits_for_the_busy_model_to_finish(tmp_path):
    factory = Factory()
    manager = make_manager(tmp_path, factory, memory_budget=150)
    lease = await manager.acquire(A, "Q4_0")
    waiting = asyncio.create_task(manager.acquire(B, "Q4_0"))
    await until(lambda: not ids(manager))  # a is out of service once its load grace has passed
    assert not waiting.done() and factory.workers[0].alive  # queued; a is never stopped under its request
    later_for_a = asyncio.create_task(manager.acquire(A, "Q4_0"))  # so this one queues behind b
    await asyncio.sleep(0.05)
    assert not later_for_a.done()
    lease.release()
    (await waiting).release()
    assert factory.workers[0].returncode == 0 and manager.stats.unloads["t/a:Q4_0", "evicted"] == 1
    (await later_for_a).release()
    assert ids(manager) == {"t/a:Q4_0"} and len(factory.workers) == 3
    await manager.close()


async def test_the_queue_gives_up_after_its_timeout_with_the_numbers_and_the_busy_model_serves_on(tmp_path):
    manager = make_manager(tmp_path, Factory(), memory_budget=150, queue_timeout=1.5)  # past a's load grace
    lease = await manager.acquire(A, "Q4_0")
    with pytest.raises(Overloaded) as refused:
        await manager.acquire(B, "Q4_0")
    assert "t/a:Q4_0" in refused.value.message and "memory budget" in refused.value.message
    assert refused.value.retry_after and ids(manager) == {"t/a:Q4_0"}
    (await manager.acquire(A, "Q4_0")).release()  # restored to service: no reload
    assert lease.model.in_flight == 1 and manager.stats.loads["t/a:Q4_0"] == 1
    lease.release()
    await manager.close()


async def test_a_client_that_leaves_the_queue_costs_nothing(tmp_path):
    factory = Factory()
    manager = make_manager(tmp_path, factory, memory_budget=150)
    lease = await manager.acquire(A, "Q4_0")
    waiting = asyncio.create_task(manager.acquire(B, "Q4_0"))
    await until(lambda: not ids(manager))  # a drains for b
    waiting.cancel()
    await asyncio.sleep(0.05)
    assert ids(manager) == {"t/a:Q4_0"} and len(factory.workers) == 1  # b never started, a serves on
    lease.release()
    await asyncio.sleep(0.05)
    assert ids(manager) == {"t/a:Q4_0"} and factory.workers[0].alive
    await manager.close()


async def test_a_full_queue_refuses_at_once(tmp_path):
    manager = make_manager(tmp_path, Factory(), memory_budget=150, max_queue=1)
    lease = await manager.acquire(A, "Q4_0")
    waiting = asyncio.create_task(manager.acquire(B, "Q4_0"))
    await asyncio.sleep(0.05)
    with pytest.raises(Overloaded, match="--max-queue") as refused:
        await manager.acquire(C, "Q4_0")
    assert refused.value.code == "queue_full" and refused.value.retry_after
    lease.release()
    (await waiting).release()
    await manager.close()


async def test_requests_waiting_for_a_slot_are_bounded_per_model(tmp_path):
    """At most --parallel + --max-waiting requests hold one model; the next is a 503 with Retry-After,
    another model is not affected, and a freed place is taken again."""
    manager = make_manager(tmp_path, Factory(), parallel=2, max_waiting=3)
    leases = [await manager.acquire(A, "Q4_0") for _ in range(5)]
    with pytest.raises(Overloaded, match="--max-waiting 3") as refused:
        await manager.acquire(A, "Q4_0")
    assert refused.value.code == "queue_full" and refused.value.retry_after
    assert leases[0].model.in_flight == 5
    (await manager.acquire(B, "Q4_0")).release()
    leases.pop().release()
    leases.append(await manager.acquire(A, "Q4_0"))
    for lease in leases:
        lease.release()
    await manager.close()


async def test_queued_loads_are_served_first_come_first_served(tmp_path):
    manager = make_manager(tmp_path, Factory(), memory_budget=150)
    lease = await manager.acquire(A, "Q4_0")
    order: list[str] = []

    async def take(model: Manifest) -> None:
        held = await manager.acquire(model, "Q4_0")
        order.append(held.model.id)
        await asyncio.sleep(0.02)
        held.release()

    tasks = [asyncio.create_task(take(B))]
    await asyncio.sleep(0.01)
    tasks.append(asyncio.create_task(take(C)))
    await asyncio.sleep(0.01)
    lease.release()
    await asyncio.gather(*tasks)
    assert order == ["t/b:Q4_0", "t/c:Q4_0"]
    await manager.close()


async def test_a_model_removed_from_the_store_stops_once_its_request_ends(tmp_path):
    factory = Factory()
    manager = make_manager(tmp_path, factory)
    lease = await manager.acquire(A, "Q4_0")
    manager.store.remove(ModelRef.parse("t/a"))
    await until(lambda: not manager.loaded())  # out of service within the store check's period
    assert factory.workers[0].alive  # its request still runs
    lease.release()
    await until(lambda: factory.workers[0].returncode == 0)
    assert manager.stats.unloads["t/a:Q4_0", "removed"] == 1
    await manager.close()


async def test_a_replaced_model_is_never_served_from_the_old_files(tmp_path):
    factory = Factory()
    manager = make_manager(tmp_path, factory)
    old = await manager.acquire(A, "Q4_0")
    files = [FileEntry(name="a.gguf", size=100, sha256="1" * 64)]
    repulled = A.model_copy(update={"quants": {"Q4_0": QuantEntry(files=files)}})
    manager.store.save(repulled)
    new = await manager.acquire(repulled, "Q4_0")
    assert new.worker is not old.worker and ids(manager) == {"t/a:Q4_0"}
    old.release()
    await until(lambda: factory.workers[0].returncode == 0)
    assert manager.stats.unloads["t/a:Q4_0", "replaced"] == 1
    new.release()
    await manager.close()


async def test_max_loaded_models_evicts_even_within_the_budget(tmp_path):
    manager = make_manager(tmp_path, Factory(), max_loaded_models=2)
    for model in (A, B, C):
        (await manager.acquire(model, "Q4_0")).release()
    assert ids(manager) == {"t/b:Q4_0", "t/c:Q4_0"}
    await manager.close()


async def test_model_larger_than_the_whole_budget_is_refused(tmp_path):
    manager = make_manager(tmp_path, Factory(), memory_budget=50)
    with pytest.raises(Overloaded, match="more than the whole memory budget"):
        await manager.acquire(A, "Q4_0")
    await manager.close()


async def test_crashed_worker_restarts_on_next_request_then_backs_off(tmp_path):
    factory = Factory()
    manager = make_manager(tmp_path, factory)
    (await manager.acquire(A, "Q4_0")).release()
    factory.workers[-1].crash()
    lease = await manager.acquire(A, "Q4_0")  # first crash: restarted at once
    assert len(factory.workers) == 2 and lease.worker is factory.workers[-1]
    lease.release()
    assert manager.stats.crashes["t/a:Q4_0"] == 1 and manager.stats.restarts["t/a:Q4_0"] == 1
    factory.workers[-1].crash()
    with pytest.raises(Overloaded, match="crashed") as refused:  # second crash in a row: wait
        await manager.acquire(A, "Q4_0")
    assert refused.value.retry_after >= 1 and len(factory.workers) == 2
    await manager.close()


async def test_supervisor_notices_a_crash_without_a_request(tmp_path):
    factory = Factory()
    manager = make_manager(tmp_path, factory)
    (await manager.acquire(A, "Q4_0")).release()
    factory.workers[0].crash()
    await until(lambda: not manager.loaded())
    assert manager.stats.crashes["t/a:Q4_0"] == 1
    await manager.close()


async def test_failed_load_names_model_and_reason_and_other_models_still_load(tmp_path):
    factory = Factory()
    manager = make_manager(tmp_path, factory)
    factory.failing[str(manager.planner.spec(A, "Q4_0").model_path)] = "llama_model_load: tensor data is not within the file"
    for _ in range(2):  # the first retry is immediate
        with pytest.raises(ModelLoadFailed, match="'t/a:Q4_0' failed to load: llama_model_load"):
            await manager.acquire(A, "Q4_0")
    with pytest.raises(Overloaded, match="failed to load") as refused:
        await manager.acquire(A, "Q4_0")
    assert refused.value.retry_after >= 1
    (await manager.acquire(B, "Q4_0")).release()
    assert ids(manager) == {"t/b:Q4_0"} and manager.stats.load_failures["t/a:Q4_0"] == 2
    await manager.close()


async def test_close_stops_every_worker_and_refuses_new_leases(tmp_path):
    factory = Factory()
    manager = make_manager(tmp_path, factory)
    for model in (A, B):
        (await manager.acquire(model, "Q4_0")).release()
    await manager.close()
    assert not manager.loaded() and all(w.returncode == 0 for w in factory.workers)
    with pytest.raises(Overloaded, match="shutting down"):
        await manager.acquire(A, "Q4_0")


async def test_unload_waits_for_requests_in_flight(tmp_path):
    manager = make_manager(tmp_path, Factory())
    lease = await manager.acquire(A, "Q4_0")
    assert await manager.unload("t/a:Q4_0") is False
    assert ids(manager) == {"t/a:Q4_0"}
    lease.release()
    await until(lambda: not manager.loaded())
    await manager.close()


async def test_model_options_override_serve_settings(tmp_path):
    manager = make_manager(tmp_path, Factory(), ctx=1024, parallel=4, model_options=["t/a:ctx=8192,parallel=1"])
    spec_a, spec_b = manager.planner.spec(A, "Q4_0"), manager.planner.spec(B, "Q4_0")
    assert (spec_a.ctx, spec_a.parallel) == (8192, 1) and (spec_b.ctx, spec_b.parallel) == (1024, 4)
    assert await manager.context_for(A, "Q4_0") == 8192


GPU = (Accelerator("CUDA0", "a fake GPU", total=1000, free=1000),)  # a budget of 900 by default
G1, G2 = manifest("t/g1", 500), manifest("t/g2", 500)


async def test_a_gpu_model_makes_room_on_its_gpu_not_in_ram(tmp_path):
    factory = Factory()
    manager = make_manager(tmp_path, factory, GPU, models=(G1, G2), model_options={"t/c": {"ngl": 0}})
    (await manager.acquire(C, "Q4_0")).release()  # the least recently used, but in RAM only
    (await manager.acquire(G1, "Q4_0")).release()
    assert manager.memory_used() == Footprint(110, {"CUDA0": 500}) and manager.device_budgets() == {"CUDA0": 900}
    (await manager.acquire(G2, "Q4_0")).release()  # 500 + 500 > 900 on CUDA0: g1 makes way, c stays
    assert ids(manager) == {"t/c:Q4_0", "t/g2:Q4_0"}
    assert manager.stats.unloads["t/g1:Q4_0", "evicted"] == 1
    await manager.close()


async def test_what_the_engine_reported_replaces_the_estimate(tmp_path):
    factory = Factory()
    manager = make_manager(tmp_path, factory, GPU, models=(G1, G2))
    factory.gate = asyncio.Event()
    loading = asyncio.create_task(manager.acquire(G1, "Q4_0"))
    await until(lambda: factory.workers)
    factory.workers[0].reported = Footprint(300, {"CUDA0": 350})  # the engine kept part of it in RAM
    factory.gate.set()
    (await loading).release()
    assert manager.memory_used() == Footprint(300, {"CUDA0": 350})
    (await manager.acquire(G2, "Q4_0")).release()  # 350 + 500 fits 900: both stay
    assert ids(manager) == {"t/g1:Q4_0", "t/g2:Q4_0"}
    await manager.close()


async def test_a_model_larger_than_its_gpu_budget_is_refused_with_ngl_set_and_split_when_the_engine_chooses(tmp_path):
    big = manifest("t/big", 2000)
    options = {"model_options": {"t/big:Q4_0": {"ngl": 99}}}
    manager = make_manager(tmp_path, Factory(), GPU, models=(big,), memory_budget=5000, **options)
    with pytest.raises(Overloaded) as refused:
        await manager.acquire(big, "Q4_0")
    message = refused.value.message
    assert "on CUDA0" in message and "device budget of 0.00 GiB" in message and "ngl=-1" in message
    manager = make_manager(tmp_path, Factory(), GPU, models=(big,), memory_budget=5000)  # ngl -1: the default
    lease = await manager.acquire(big, "Q4_0")
    assert lease.model.footprint == Footprint(10 + 1100, {"CUDA0": 900})  # the rest stays in RAM
    lease.release()
    await manager.close()


async def test_the_device_budget_can_be_set(tmp_path):
    manager = make_manager(tmp_path, Factory(), GPU, models=(G1, G2), device_memory_budget=1200)
    (await manager.acquire(G1, "Q4_0")).release()
    (await manager.acquire(G2, "Q4_0")).release()
    assert ids(manager) == {"t/g1:Q4_0", "t/g2:Q4_0"} and manager.device_budgets() == {"CUDA0": 1200}
    await manager.close()
