"""Both runtimes start a model with the same engine settings: xllamacpp's CommonParams and llama-server's
flags are two spellings of one EngineSettings, checked here field by field."""

from __future__ import annotations

import pytest
import xllamacpp as xlc

from nexa.engine.params import build_params, llama_server_args
from nexa.engine.spec import WorkerSpec
from nexa.store import ModelType


def spec(model_type: ModelType, **fields) -> WorkerSpec:
    return WorkerSpec(model_path="/m/model.gguf", model_type=model_type, alias="org/repo:Q4_0", ctx=1024,
                      parallel=3, threads=2, ngl=7, api_key="secret", **fields)


def flags(args: list[str]) -> dict[str, str | bool]:
    """--name value pairs and bare switches as a dict."""
    out: dict[str, str | bool] = {}
    for i, arg in enumerate(args):
        if arg.startswith("--"):
            has_value = i + 1 < len(args) and not args[i + 1].startswith("--")
            out[arg[2:]] = args[i + 1] if has_value else True
    return out


@pytest.mark.parametrize("model_type", [ModelType.llm, ModelType.embedder, ModelType.reranker])
@pytest.mark.parametrize("reasoning", ["parsed", "raw"])
def test_llama_server_flags_say_what_common_params_say(model_type, reasoning):
    s = spec(model_type, reasoning_format=reasoning, mmproj_path="/m/mmproj.gguf")
    params, args = build_params(s), flags(llama_server_args(s))
    assert args["model"] == params.model.path and args["mmproj"] == params.mmproj.path
    assert {args["alias"]} == params.model_alias
    # one KV cache of ctx tokens that the 3 slots share: a single request may use all of it
    assert int(args["ctx-size"]) == params.n_ctx == 1024
    assert params.kv_unified and "kv-unified" in args and "no-kv-unified" not in args
    assert int(args["parallel"]) == params.n_parallel
    assert int(args["threads"]) == params.cpuparams.n_threads == int(args["threads-batch"]) == params.cpuparams_batch.n_threads
    assert int(args["n-gpu-layers"]) == params.n_gpu_layers
    assert ("jinja" in args) == params.use_jinja
    reasoning_enum = getattr(xlc.common_reasoning_format, f"COMMON_REASONING_FORMAT_{args['reasoning-format'].upper()}")
    assert reasoning_enum == params.reasoning_format
    assert ("no-warmup" in args) == (not params.warmup)
    assert ("metrics" in args) == params.endpoint_metrics
    assert ("embedding" in args) == params.embedding
    if params.embedding:
        assert int(args["batch-size"]) == params.n_batch and int(args["ubatch-size"]) == params.n_ubatch
    else:
        assert "batch-size" not in args and "ubatch-size" not in args
    rank = params.pooling_type == xlc.llama_pooling_type.LLAMA_POOLING_TYPE_RANK
    assert (args.get("pooling") == "rank") == rank == (model_type is ModelType.reranker)
    assert (args["host"], args["port"]) == (params.hostnames[0], str(params.port))
    assert "slot-save-path" not in args and params.slot_save_path == ""
    assert "spec-type" not in args and params.speculative.types == [xlc.common_speculative_type.COMMON_SPECULATIVE_TYPE_NONE]


@pytest.mark.parametrize("kind", ["f16", "q8_0", "q4_0"])
def test_the_kv_cache_type_and_prompt_caches_are_spelled_alike(kind):
    s = spec(ModelType.llm, kv_cache_type=kind, prompt_cache_mib=384, slot_save_path="/d/prompt-cache/m-1/")
    params, args = build_params(s), flags(llama_server_args(s))
    assert int(args["cache-ram"]) == params.cache_ram_mib == 384
    assert args["slot-save-path"] == params.slot_save_path == "/d/prompt-cache/m-1/"
    expected = getattr(xlc.ggml_type, f"GGML_TYPE_{kind.upper()}")
    assert args["cache-type-k"] == args["cache-type-v"] == kind
    assert params.cache_type_k == params.cache_type_v == expected


@pytest.mark.parametrize("fields", [{"speculative": "ngram-mod"},
                                    {"speculative": "draft-simple", "draft_model_path": "/m/draft.gguf"}])
def test_speculative_decoding_is_spelled_alike(fields):
    s = spec(ModelType.llm, **fields)
    params, args = build_params(s), flags(llama_server_args(s))
    kind = f"COMMON_SPECULATIVE_TYPE_{args['spec-type'].upper().replace('-', '_')}"
    assert params.speculative.types == [getattr(xlc.common_speculative_type, kind)]
    assert args.get("spec-draft-model", "") == params.speculative.draft.mparams.path


def test_the_api_key_never_reaches_argv():
    assert not any("secret" in arg for arg in llama_server_args(spec(ModelType.llm)))
