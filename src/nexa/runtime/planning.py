"""How a model would load: the worker spec that serve-wide settings and its --model-option give it, the context
fitted to the budgets, the RAM prompt cache and saved-slot folder it gets, and the footprint estimated from all
that. Reads GGUF headers and may ask a runtime for its GPUs (a process start), so it runs off the event loop."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

from nexa.config import Settings
from nexa.engine.spec import WorkerSpec
from nexa.runtime import context, memory, slot_cache
from nexa.runtime.accelerators import Accelerator, accelerators
from nexa.runtime.memory import Footprint
from nexa.runtime.runtimes import resolve as resolve_runtime
from nexa.runtime.speculative import draft_fields
from nexa.runtime.worker import Worker
from nexa.store import Manifest, ModelType, Store
from nexa.store.gguf_meta import read_shape

Estimator = Callable[[WorkerSpec, int, Mapping[str, int]], Footprint]
Accelerators = Callable[[str], tuple[Accelerator, ...]]

# llama-server's default host RAM for prompt caches (--cache-ram 8192): nexa's default never takes more.
PROMPT_CACHE_CAP = 8 * memory.GIB
# llama.cpp's ngl: -1 lets it offload as many layers as fit; -2 is all of them, whatever they need.
AUTO_LAYERS = -1


def weights(manifest: Manifest, quant: str) -> int:
    """Bytes of the files a load maps: the quant's shards and the projector."""
    return manifest.quants[quant].size + (manifest.mmproj.size if manifest.mmproj else 0)


class Plan(NamedTuple):
    """How a model would load: its spec, its estimated footprint, and the GPUs its runtime sees (name -> bytes)."""

    spec: WorkerSpec
    need: Footprint
    gpus: dict[str, int]


class Planner:
    def __init__(self, store: Store, settings: Settings, estimator: Estimator = memory.estimate,
                 gpus: Accelerators = accelerators):
        self.store = store
        self.settings = settings
        self._estimate = estimator
        self._gpus = gpus
        self._device_sizes: dict[str, int] = {}  # every GPU a runtime in use reported: name -> bytes

    @property
    def memory_budget(self) -> int:
        return int(self.settings.memory_budget)

    def device_budgets(self) -> dict[str, int]:
        """Bytes models may take on each GPU a runtime reported: --device-memory-budget, else 90% of it."""
        return self._budgets_for(self._device_sizes)

    def saw(self, sizes: Mapping[str, int]) -> None:
        """Count the GPUs a runtime being loaded reported in the device budgets."""
        self._device_sizes.update(sizes)

    def _budgets_for(self, sizes: Mapping[str, int]) -> dict[str, int]:
        fixed = self.settings.device_memory_budget
        return {name: memory.device_budget(size, fixed) for name, size in sizes.items()}

    def _gpu_sizes(self, runtime: str) -> dict[str, int]:
        """The GPUs `runtime` sees: name -> bytes (asked once per runtime; may start a process)."""
        return {gpu.name: gpu.total for gpu in self._gpus(runtime)}

    def spec(self, manifest: Manifest, quant: str) -> WorkerSpec:
        """How `manifest:quant` would be started: serve-wide settings with its --model-option overrides. Its
        context is --ctx / ctx= when set, else fitted to its budgets (nexa.runtime.context)."""
        folder = self.store.model_dir(manifest.name)
        options = self.settings.options_for(manifest.name, quant)
        ctx = options.ctx or self.settings.ctx
        spec = WorkerSpec(
            model_path=str(manifest.quants[quant].files[0].location(folder)),
            mmproj_path=str(manifest.mmproj.location(folder)) if manifest.mmproj else None,
            model_type=manifest.model_type,
            alias=f"{manifest.name}:{quant}",
            ctx=ctx or context.FALLBACK,
            parallel=options.parallel or self.settings.parallel,
            threads=options.threads or self.settings.threads,
            ngl=self.settings.ngl if options.ngl is None else options.ngl,
            kv_cache_type=options.kv_cache_type or self.settings.kv_cache_type,
            reasoning_format=self.settings.reasoning_format,
            runtime=resolve_runtime(self.settings.runtime_for(manifest.name, quant), self.settings.datadir),
            api_key=Worker.new_api_key(),
            **draft_fields(self.store, options.draft),
        )
        size = weights(manifest, quant)
        if not ctx:
            spec = spec.model_copy(update={"ctx": self._fit_context(spec, size)})
        spec = spec.model_copy(update={"prompt_cache_mib": self._prompt_cache_mib(spec, size)})
        return spec.model_copy(update={"slot_save_path": self._slot_folder(manifest, quant, spec)})

    def plan(self, manifest: Manifest, quant: str) -> Plan:
        """How a load of `manifest:quant` would start and what it would hold, estimated."""
        spec = self.spec(manifest, quant)
        sizes = self._gpu_sizes(spec.runtime)
        need = self._estimate(spec, weights(manifest, quant), sizes)
        if spec.ngl == AUTO_LAYERS:  # the engine picks the GPU layers (its --fit): what does not fit stays in RAM
            need = memory.fit_devices(need, self._budgets_for(sizes))
        return Plan(spec, need, sizes)

    def _slot_folder(self, manifest: Manifest, quant: str, spec: WorkerSpec) -> str | None:
        """Where the engine saves its slots' prompt caches when the model unloads (nexa.runtime.slot_cache); None
        when --prompt-cache-disk is 0 or the model keeps no prompts (an embedder)."""
        if not self.settings.prompt_cache_disk or spec.model_type in (ModelType.embedder, ModelType.reranker):
            return None
        shas = ",".join(file.sha256 for file in manifest.quants[quant].files)
        folder = slot_cache.folder_for(self.store.root / slot_cache.FOLDER, spec.alias, spec, shas)
        return slot_cache.engine_path(folder)

    def _fit_context(self, spec: WorkerSpec, size: int) -> int:
        """The trained context of `spec`'s model, lowered as far as its RAM and GPU budgets need."""
        shape = read_shape(spec.model_path)
        trained = shape.n_ctx_train if shape is not None and shape.n_ctx_train else context.FALLBACK
        if spec.model_type in (ModelType.embedder, ModelType.reranker):
            trained = min(trained, context.RETRIEVAL_CAP)
        sizes = self._gpu_sizes(spec.runtime)
        return context.fit_context(
            trained, lambda ctx: self._estimate(spec.model_copy(update={"ctx": ctx}), size, sizes),
            self.memory_budget, self._budgets_for(sizes),
        )

    def _prompt_cache_mib(self, spec: WorkerSpec, size: int) -> int:
        """--prompt-cache if set; else room for one full context's KV cache (up to llama-server's 8 GiB), out of
        what the memory budget leaves once the model and its context are counted: the context comes first."""
        if self.settings.prompt_cache is not None:
            return int(self.settings.prompt_cache) // memory.MIB
        shape = read_shape(spec.model_path)
        if shape is None:
            return 0
        room = self.memory_budget - self._estimate(spec, size, self._gpu_sizes(spec.runtime)).ram
        return max(0, min(shape.kv_bytes_per_token(spec.kv_cache_type) * spec.ctx, PROMPT_CACHE_CAP, room)) // memory.MIB
