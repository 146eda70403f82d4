"""Translate a WorkerSpec into xllamacpp's CommonParams."""

from __future__ import annotations

import xllamacpp as xlc

from nexa.engine.spec import WorkerSpec
from nexa.store.manifest import ModelType

_REASONING = {
    "parsed": xlc.common_reasoning_format.COMMON_REASONING_FORMAT_DEEPSEEK,
    "raw": xlc.common_reasoning_format.COMMON_REASONING_FORMAT_NONE,
}


def build_params(spec: WorkerSpec) -> xlc.CommonParams:
    params = xlc.CommonParams()
    params.model.path = spec.model_path
    if spec.mmproj_path:
        params.mmproj.path = spec.mmproj_path
    params.model_alias = {spec.alias}
    # n_ctx is the total KV size, split evenly across slots: each slot gets `ctx`.
    params.n_ctx = spec.ctx * spec.parallel
    params.n_parallel = spec.parallel
    params.cpuparams.n_threads = spec.threads
    params.cpuparams_batch.n_threads = spec.threads
    params.n_gpu_layers = spec.ngl
    params.use_jinja = True
    params.reasoning_format = _REASONING[spec.reasoning_format]
    params.warmup = False
    params.hostnames = ["127.0.0.1"]
    params.port = 0
    params.api_keys = [spec.api_key]
    params.endpoint_metrics = True
    if spec.model_type in (ModelType.embedder, ModelType.reranker):
        params.embedding = True
        # An embedding input is processed in one batch, so a batch must hold a whole slot's context.
        params.n_batch = params.n_ubatch = spec.ctx
    if spec.model_type is ModelType.reranker:
        params.pooling_type = xlc.llama_pooling_type.LLAMA_POOLING_TYPE_RANK
    return params
