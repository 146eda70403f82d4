"""ModelManager: the one owner of loaded models. Resolves names, loads on demand, restarts the dead."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from nexa.config import Settings
from nexa.engine.spec import WorkerSpec
from nexa.errors import ModelLoadFailed
from nexa.runtime.worker import Worker
from nexa.store import Manifest, ModelRef, Store

log = logging.getLogger("nexa.manager")

WorkerFactory = Callable[[WorkerSpec], Worker]


@dataclass
class LoadedModel:
    id: str  # org/repo:QUANT
    manifest: Manifest
    quant: str
    worker: Worker
    in_flight: int = 0
    last_used: float = field(default_factory=time.monotonic)
    loaded_at: float = field(default_factory=time.time)


class Lease:
    """A request's hold on a loaded model; the model is not unloaded while any lease is open."""

    def __init__(self, model: LoadedModel):
        self.model = model
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

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()


class ModelManager:
    def __init__(self, store: Store, settings: Settings, worker_factory: WorkerFactory = Worker):
        self.store = store
        self.settings = settings
        self._worker_factory = worker_factory
        self._loaded: dict[str, LoadedModel] = {}
        self._load_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def resolve(self, name: str) -> tuple[Manifest, str]:
        return self.store.resolve(ModelRef.parse(name))

    def loaded(self) -> list[LoadedModel]:
        return list(self._loaded.values())

    async def acquire(self, manifest: Manifest, quant: str) -> Lease:
        """Lease a resolved model, loading it first if needed; concurrent first requests share one load."""
        model_id = f"{manifest.name}:{quant}"
        model = self._loaded.get(model_id)
        if model is None or not model.worker.alive:
            async with self._load_locks[model_id]:
                model = self._loaded.get(model_id)
                if model is not None and not model.worker.alive:
                    log.warning("worker for %s exited (code %s); restarting it", model_id, model.worker.returncode)
                    await self._discard(model)
                    model = None
                if model is None:
                    model = await self._load(model_id, manifest, quant)
        return Lease(model)

    async def _load(self, model_id: str, manifest: Manifest, quant: str) -> LoadedModel:
        spec = self._spec(manifest, quant)
        worker = self._worker_factory(spec)
        log.info("loading %s", model_id)
        started = time.monotonic()
        try:
            await worker.start(self.settings.load_timeout)
        except ModelLoadFailed as exc:
            raise ModelLoadFailed(f"model '{model_id}' failed to load: {exc.message}", code="model_load_failed") from exc
        log.info("loaded %s in %.2f s (pid %s)", model_id, time.monotonic() - started, worker.pid)
        model = LoadedModel(id=model_id, manifest=manifest, quant=quant, worker=worker)
        self._loaded[model_id] = model
        return model

    def _spec(self, manifest: Manifest, quant: str) -> WorkerSpec:
        folder = self.store.model_dir(manifest.name)
        return WorkerSpec(
            model_path=str(manifest.quants[quant].files[0].location(folder)),
            mmproj_path=str(manifest.mmproj.location(folder)) if manifest.mmproj else None,
            model_type=manifest.model_type,
            alias=f"{manifest.name}:{quant}",
            ctx=self.settings.ctx,
            parallel=self.settings.parallel,
            threads=self.settings.threads,
            ngl=self.settings.ngl,
            reasoning_format=self.settings.reasoning_format,
            api_key=Worker.new_api_key(),
        )

    async def unload(self, model_id: str) -> None:
        model = self._loaded.get(model_id)
        if model is not None:
            await self._discard(model)
            log.info("unloaded %s", model_id)

    async def _discard(self, model: LoadedModel) -> None:
        self._loaded.pop(model.id, None)
        await model.worker.close()

    async def close(self) -> None:
        """Stop every worker; called on shutdown."""
        await asyncio.gather(*(self._discard(m) for m in list(self._loaded.values())))
