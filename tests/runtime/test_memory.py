"""Memory estimates from GGUF headers, made before a model is loaded."""

from __future__ import annotations

from nexa.engine.spec import WorkerSpec
from nexa.runtime.memory import PROCESS_BASELINE, estimate
from nexa.store.gguf_meta import read_shape


def spec(path, ctx: int = 1024, parallel: int = 1, model_type: str = "llm") -> WorkerSpec:
    return WorkerSpec(model_path=str(path), model_type=model_type, alias="x", ctx=ctx, parallel=parallel,
                      threads=1, api_key="k")


def test_kv_cache_grows_with_context_times_slots(tiny_dir):
    path = tiny_dir / "qwen3-random.gguf"
    shape = read_shape(str(path))
    # 2 layers x 1 KV head x (64 + 64) dims x 2 bytes (f16)
    assert (shape.n_layer, shape.n_head_kv, shape.key_length, shape.value_length) == (2, 1, 64, 64)
    small, large = estimate(spec(path, 1024, 1), 0), estimate(spec(path, 2048, 4), 0)
    assert large - small == shape.kv_bytes_per_token() * (2048 * 4 - 1024) == 512 * 7168


def test_encoder_models_keep_no_kv_cache(tiny_dir):
    path = tiny_dir / "bert-embed.gguf"
    assert read_shape(str(path)).kv_bytes_per_token() == 0
    assert estimate(spec(path, 512, 1, "embedder"), 0) == estimate(spec(path, 512, 8, "embedder"), 0)


def test_unreadable_file_counts_its_weights_and_the_process(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 20)
    assert estimate(spec(broken), 5000) == 5000 + PROCESS_BASELINE
