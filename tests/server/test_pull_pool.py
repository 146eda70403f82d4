"""Pulls run on threads of their own (issue 21, item 4): six slow pulls leave the shared pool to model loads,
and a pull stopped by a DELETE or by the server's shutdown leaves its partial file for the next pull."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nexa.hub.pull import _DiskReservations
from nexa.hub.resolve import RemoteFile
from nexa.errors import StoreError
from nexa.store import Store
from tests.conftest import ServerProcess, import_tiny
from tests.fixtures.fake_hub import FakeHub, FakeRepo, nexa_env

TEXT = "test/qwen3-text"
SLOW = [f"slow-org/Slow{i}-GGUF" for i in range(6)]
PADDING = 24 << 20  # at the fake Hub's slow pace (64 KiB each 20 ms) about 8 s a pull


@pytest.fixture(scope="module")
def slow_hub(tiny_dir: Path) -> Iterator[FakeHub]:
    hub = FakeHub()
    weights = (tiny_dir / "qwen3-script-text.gguf").read_bytes() + bytes(PADDING)
    for repo in SLOW:
        hub.repos[repo] = FakeRepo({"slow-Q4_K_M.gguf": weights}, slow={"slow-Q4_K_M.gguf": 100})
    yield hub
    hub.stop()


def test_six_slow_pulls_do_not_block_a_model_load_and_stopping_them_keeps_their_partial_files(
        slow_hub, tiny_dir, tmp_path):
    data = tmp_path / "data"
    import_tiny(Store(data), tiny_dir, TEXT, ["qwen3-script-text.gguf"], None)
    server = ServerProcess(data, env=nexa_env(slow_hub, data, tmp_path / "hf-home"))
    try:
        for repo in SLOW:
            assert httpx.post(server.base_url + "/models", json={"model": repo}).json() == {"success": True}
        time.sleep(1.0)  # the pulls are under way
        load = httpx.post(server.base_url + "/v1/load", json={"model": TEXT}, timeout=120)
        assert load.status_code == 200, load.text
        pulled = {m["id"].split(":")[0] for m in httpx.get(server.base_url + "/models").json()["data"]}
        assert pulled == {TEXT}, f"the load waited for pulls to finish ({load.elapsed.total_seconds():.1f} s)"

        # DELETE of a model being pulled stops its pull (the UI's cancel) and keeps what it had.
        partials = lambda: list(data.rglob("*.incomplete"))  # noqa: E731
        deadline = time.monotonic() + 30
        while not partials():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        pulling = partials()[0].parent.name
        repo = next(r for r in SLOW if r.endswith(pulling))
        assert httpx.delete(server.base_url + "/models", params={"model": repo}).json() == {"success": True}
    finally:
        started = time.monotonic()
        server.stop(signal.SIGINT)  # Ctrl-C stops the other pulls at their next chunk
        stopped = time.monotonic() - started
    assert stopped < 15
    left = {p.parent.name for p in data.rglob("*.incomplete")}
    assert pulling in left and all(p.stat().st_size > 0 for p in data.rglob("*.incomplete"))
    assert not any((data / "models" / r / "manifest.json").exists() for r in SLOW)


def test_parallel_pulls_share_one_disk_check(tmp_path, monkeypatch):
    class Usage:
        free = 100 << 20

    monkeypatch.setattr("nexa.hub.pull.shutil.disk_usage", lambda _: Usage)
    disk = _DiskReservations()
    sixty = [RemoteFile(name="a.gguf", size=60 << 20, sha256=None)]
    with disk.reserve(tmp_path, sixty) as wrote:
        with pytest.raises(StoreError, match="beside the pulls under way"):
            with disk.reserve(tmp_path, [RemoteFile(name="b.gguf", size=60 << 20, sha256=None)]):
                pass
        wrote(30 << 20)  # 30 MB of the first are on disk (and out of `free`): 30 MB are still promised
        Usage.free = 70 << 20
        with disk.reserve(tmp_path, [RemoteFile(name="c.gguf", size=40 << 20, sha256=None)]):
            pass
