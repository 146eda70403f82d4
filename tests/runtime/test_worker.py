"""A real worker process that cannot load its model says why, in the engine's own words, on either runtime."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest

from nexa.engine.spec import WorkerSpec
from nexa.errors import ModelLoadFailed
from nexa.runtime.memory import PROCESS_BASELINE
from nexa.runtime import worker as worker_module
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


def chatty_engine(path: Path, before: str, then: str) -> str:
    """A llama-server stand-in (the only fake: a process that logs, as a real one does at verbosity 4, a
    line far over 64 KiB, then `then`) that exits 1 without serving."""
    path.write_text(f"#!{sys.executable}\nimport sys\nsys.stderr.write({before!r})\nsys.stderr.write({then!r})\n"
                    "sys.stderr.flush()\nsys.exit(1)\n")
    path.chmod(0o755)
    return str(path)


async def test_an_engine_log_line_over_64_kib_neither_stops_the_log_nor_hides_the_crash_reason(tmp_path):
    prompt = "0.00.001.000 I slot launch_slot_: prompt '" + "x" * 200 * 1024 + "'\n"
    reason = "0.00.002.000 E llama_model_load: error loading model: the fake's own reason\n"
    engine = chatty_engine(tmp_path / "llama-server", prompt, reason)
    assert "error loading model: the fake's own reason" in await load_error(tmp_path / "any.gguf", engine)


async def test_log_lines_are_cut_at_the_cap_and_say_how_much_was_cut():
    stream = asyncio.StreamReader()
    stream.feed_data(b"short\n" + b"y" * (300 * 1024) + b"\nnext line\r\nlast without newline")
    stream.feed_eof()
    lines = [line async for line in worker_module.log_lines(stream, cap=100)]
    assert lines == ["short", "y" * 100 + f" [... {300 * 1024 - 100} more bytes]", "next line", "last without newline"]


@pytest.mark.parametrize("level, kept", [(logging.INFO, 2), (logging.DEBUG, 5)])
async def test_a_loaded_engines_log_is_read_to_the_end_and_split_only_for_the_debug_log(monkeypatch, caplog, level, kept):
    monkeypatch.setattr(worker_module, "CALM_PACE", 0.001)
    stream = asyncio.StreamReader()
    stream.feed_data(b"0.00.001.000 I loading\n0.00.002.000 I main: server is listening on http://127.0.0.1:1\n")
    stream.feed_data(b"0.00.003.000 I slot launch_slot_: a request\n" + b"0.00.004.000 I done\n")
    stream.feed_data(b"z" * (1 << 20))  # more than a pipe holds: the engine would wait on it if left unread
    stream.feed_eof()
    worker = Worker(WorkerSpec.model_construct())
    worker._log_pipe = pipe = PipeTransport()
    with caplog.at_level(level, logger="nexa.worker"):
        await asyncio.wait_for(worker._drain_stderr(stream), 10)
    assert stream.at_eof() and worker._loaded.is_set()
    assert len(worker._stderr_tail) == kept  # the lines after the load only where the debug log wants them
    # Between the paced reads the pipe is not watched: each engine write would wake the router's loop.
    assert (pipe.pauses > 0) == (level == logging.INFO) and pipe.reading


class PipeTransport:
    """The read pipe's transport, as far as the drain uses it: whether it is read, and how often it was paused."""

    def __init__(self) -> None:
        self.reading, self.pauses = True, 0

    def pause_reading(self) -> None:
        self.reading, self.pauses = False, self.pauses + 1

    def resume_reading(self) -> None:
        self.reading = True
