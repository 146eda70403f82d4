"""How a WorkerSpec becomes engine settings, for each runtime: xllamacpp's CommonParams or llama-server's flags.

`engine_settings` decides every value once; `build_params` and `llama_server_args` only spell those values
for their runtime, so the two runtimes cannot drift apart (tests/engine/test_params.py checks they agree).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from nexa.engine.spec import WorkerSpec
from nexa.store.manifest import ModelType

if TYPE_CHECKING:
    import xllamacpp as xlc

_REASONING: dict[str, Literal["deepseek", "none"]] = {"parsed": "deepseek", "raw": "none"}


@dataclass(frozen=True)
class EngineSettings:
    """The engine options nexa sets, with llama.cpp's meaning; both runtimes listen on 127.0.0.1, port 0."""

    model: str
    mmproj: str | None
    alias: str
    n_ctx: int  # the KV cache's size in tokens, shared by every slot (unified KV cache)
    n_parallel: int
    threads: int  # decode and prompt threads alike
    ngl: int
    reasoning_format: Literal["deepseek", "none"]
    embedding: bool
    rank_pooling: bool
    n_batch: int | None  # None: the engine's default (2048 / 512)
    speculative: str | None  # llama.cpp's --spec-type, e.g. "ngram-mod"
    draft_model: str | None
    warmup: bool = False  # an empty warm-up run only delays the load
    # 4 (trace) adds the library's load report: each buffer's size and device, which the memory budget
    # counts (nexa.runtime.memory.LoadReport); per request it adds a few lines, no per-token ones.
    log_verbosity: int = 4
    jinja: bool = True
    metrics: bool = True
    cache_type: str = "f16"  # of both K and V
    # Host RAM for the prompts that leave a slot, so a conversation that comes back after other requests
    # (an agent's side requests) finds its prefix; 0 turns it off, and with it the saving of idle slots.
    cache_ram_mib: int = 0
    # One KV cache for all slots: a single long request can use all of it while short ones share it; without it
    # llama.cpp splits n_ctx evenly, and an agent's long prompt would not fit one slot.
    kv_unified: bool = True
    # HTTP threads beyond the slots. Each connection the router keeps alive between requests holds one of the
    # engine's HTTP threads; at llama.cpp's default (slots + 2 on a small machine) a new connection found no
    # thread under load and was dropped unanswered (a 503 'worker stopped'). Idle threads cost nothing.
    http_spare: int = 16

    @property
    def http_threads(self) -> int:
        return self.n_parallel + self.http_spare
    # Where the engine writes a slot's KV cache on POST /slots/{id}?action=save and reads it back (nexa.runtime.slot_cache).
    slot_save_path: str | None = None


def engine_settings(spec: WorkerSpec) -> EngineSettings:
    retrieval = spec.model_type in (ModelType.embedder, ModelType.reranker)
    return EngineSettings(
        model=spec.model_path,
        mmproj=spec.mmproj_path,
        alias=spec.alias,
        n_ctx=spec.ctx,
        n_parallel=spec.parallel,
        threads=spec.threads,
        ngl=spec.ngl,
        reasoning_format=_REASONING[spec.reasoning_format],
        embedding=retrieval,
        rank_pooling=spec.model_type is ModelType.reranker,
        # An embedding input is processed in one batch, so a batch must hold a whole slot's context.
        n_batch=spec.ctx if retrieval else None,
        speculative=spec.speculative,
        draft_model=spec.draft_model_path,
        cache_type=spec.kv_cache_type,
        cache_ram_mib=spec.prompt_cache_mib,
        slot_save_path=spec.slot_save_path,
    )


def build_params(spec: WorkerSpec) -> xlc.CommonParams:
    """CommonParams for the in-process engine (imported here: the router never loads xllamacpp)."""
    import xllamacpp as xlc

    s = engine_settings(spec)
    params = xlc.CommonParams()
    params.model.path = s.model
    if s.mmproj:
        params.mmproj.path = s.mmproj
    params.model_alias = {s.alias}
    params.n_ctx = s.n_ctx
    params.n_parallel = s.n_parallel
    params.kv_unified = s.kv_unified
    params.cache_type_k = params.cache_type_v = getattr(xlc.ggml_type, f"GGML_TYPE_{s.cache_type.upper()}")
    params.cache_ram_mib = s.cache_ram_mib
    if s.slot_save_path:
        params.slot_save_path = s.slot_save_path
    params.cpuparams.n_threads = s.threads
    params.n_threads_http = s.http_threads
    params.cpuparams_batch.n_threads = s.threads
    params.n_gpu_layers = s.ngl
    params.use_jinja = s.jinja
    params.reasoning_format = getattr(
        xlc.common_reasoning_format, f"COMMON_REASONING_FORMAT_{s.reasoning_format.upper()}"
    )
    params.warmup = s.warmup
    params.verbosity = s.log_verbosity
    params.hostnames = ["127.0.0.1"]
    params.port = 0
    params.api_keys = [spec.api_key]
    params.endpoint_metrics = s.metrics
    params.embedding = s.embedding
    if s.n_batch is not None:
        params.n_batch = params.n_ubatch = s.n_batch
    if s.rank_pooling:
        params.pooling_type = xlc.llama_pooling_type.LLAMA_POOLING_TYPE_RANK
    if s.speculative:
        kind = f"COMMON_SPECULATIVE_TYPE_{s.speculative.upper().replace('-', '_')}"
        params.speculative.types = [getattr(xlc.common_speculative_type, kind)]
    if s.draft_model:
        params.speculative.draft.mparams.path = s.draft_model
    return params


def llama_server_args(spec: WorkerSpec) -> list[str]:
    """llama-server's command-line flags. The API key is not among them: argv is readable by every user,
    so the runtime passes it in the environment (LLAMA_API_KEY)."""
    s = engine_settings(spec)
    args = [
        "--model", s.model, "--alias", s.alias,
        "--ctx-size", str(s.n_ctx), "--parallel", str(s.n_parallel),
        "--kv-unified" if s.kv_unified else "--no-kv-unified",
        "--cache-type-k", s.cache_type, "--cache-type-v", s.cache_type, "--cache-ram", str(s.cache_ram_mib),
        "--threads", str(s.threads), "--threads-batch", str(s.threads), "--threads-http", str(s.http_threads),
        "--n-gpu-layers", str(s.ngl),
        "--jinja" if s.jinja else "--no-jinja",
        "--reasoning-format", s.reasoning_format,
        "--host", "127.0.0.1", "--port", "0",
        "--no-ui",
        "--log-verbosity", str(s.log_verbosity),
    ]
    if s.mmproj:
        args += ["--mmproj", s.mmproj]
    if not s.warmup:
        args.append("--no-warmup")
    if s.metrics:
        args.append("--metrics")
    if s.embedding:
        args.append("--embedding")
    if s.n_batch is not None:
        args += ["--batch-size", str(s.n_batch), "--ubatch-size", str(s.n_batch)]
    if s.rank_pooling:
        args += ["--pooling", "rank"]
    if s.speculative:
        args += ["--spec-type", s.speculative]
    if s.draft_model:
        args += ["--spec-draft-model", s.draft_model]
    if s.slot_save_path:
        args += ["--slot-save-path", s.slot_save_path]
    return args
