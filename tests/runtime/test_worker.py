"""A real worker process that cannot load its model says why, in the engine's own words, on either runtime."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest

from nexa.engine.spec import WorkerSpec
from nexa.errors import ModelLoadFailed
from nexa.runtime.memory import PROCESS_BASELINE
from nexa.runtime.worker import Worker, engine_error
from nexa.store import ModelType
from nexa.store.gguf_meta import read_shape
from tests.conftest import native_binary, native_datadir

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["xllamacpp", "native"])
def runtime(request: pytest.FixtureRequest) -> str:
    if request.param == "xllamacpp":
        return "xllamacpp"
    binary = native_binary()
    if binary is None:
        pytest.skip(f"no native runtime cached in {native_datadir()} (see tests/conftest.py)")
    return str(binary)


def future_architecture(path: Path) -> None:
    """A GGUF of an architecture this engine does not know (a model newer than the engine)."""
    writer = gguf.GGUFWriter(path, "nexa-future")
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


async def load_error(path: Path, runtime: str) -> str:
    worker = Worker(WorkerSpec(model_path=str(path), model_type=ModelType.llm, alias="t", ctx=512, parallel=1,
                               threads=1, runtime=runtime, api_key=Worker.new_api_key()))
    with pytest.raises(ModelLoadFailed) as refused:
        await worker.start(timeout=60)
    assert not worker.alive
    return refused.value.message


async def test_a_truncated_model_is_refused_with_the_engines_reason_not_failed_to_init(tiny_dir, tmp_path, runtime):
    whole = (tiny_dir / "qwen3-script-text.gguf").read_bytes()
    (tmp_path / "half.gguf").write_bytes(whole[: len(whole) // 2])
    message = await load_error(tmp_path / "half.gguf", runtime)
    assert "is not within the file bounds, model is corrupted or incomplete" in message
    assert "Failed to init server" not in message


async def test_an_unknown_architecture_is_named(tmp_path, runtime):
    future_architecture(tmp_path / "future.gguf")
    assert "unknown model architecture: 'nexa-future'" in await load_error(tmp_path / "future.gguf", runtime)


async def test_a_binary_that_cannot_start_is_a_load_error_naming_it(tmp_path):
    message = await load_error(tmp_path / "any.gguf", str(tmp_path / "gone" / "llama-server"))
    assert "cannot run" in message and "gone/llama-server" in message


def test_only_error_level_engine_lines_count_and_lose_their_time_stamp():
    assert engine_error("0.00.007.634 E llama_model_load: error loading model: bad") == (
        "llama_model_load: error loading model: bad")
    assert engine_error("0.00.007.153 I srv    load_model: loading model 'x.gguf'") is None
    assert engine_error("ggml.c:1234: GGML_ASSERT(x) failed") is None


async def loaded_footprint(path: Path, runtime: str, parallel: int, ctx: int = 1024):
    worker = Worker(WorkerSpec(model_path=str(path), model_type=ModelType.llm, alias="t", ctx=ctx,
                               parallel=parallel, threads=1, runtime=runtime, api_key=Worker.new_api_key()))
    await worker.start(timeout=60)
    try:
        return worker.footprint()
    finally:
        await worker.close()


async def test_a_loaded_worker_reports_what_its_engine_allocated(tiny_dir, runtime):
    path = tiny_dir / "qwen3-random.gguf"
    one, two = await loaded_footprint(path, runtime, 1), await loaded_footprint(path, runtime, 2, ctx=2048)
    assert one is not None and one.devices == {} and two.devices == {}  # this machine has no GPU
    assert one.ram - PROCESS_BASELINE >= path.stat().st_size  # the weights' buffer, at least
    # The slots share one KV cache: a second slot adds none, 1,024 more tokens of context add their KV cache
    # (and 1 MiB of attention mask in the compute buffer).
    kv = read_shape(str(path)).kv_bytes_per_token() * 1024
    assert kv <= two.ram - one.ram < kv + 4 * 1024 * 1024
