"""Shutdown stops every worker: no orphan process after SIGTERM or Ctrl-C."""

from __future__ import annotations

import signal

import httpx
import pytest

from tests.conftest import ServerProcess, worker_pids


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_server_and_all_workers(session_store, sig):
    datadir = str(session_store.root) + "/"  # a spelling of its own, so only this server's workers match
    server = ServerProcess(session_store.root, env={"NEXA_DATADIR": datadir})
    for model in ("test/qwen3-text", "test/llama-text"):
        response = httpx.post(server.base_url + "/v1/chat/completions", timeout=30,
                              json={"model": model, "messages": [{"role": "user", "content": "hi"}]})
        assert response.status_code == 200
    assert len(worker_pids(datadir)) == 2
    assert server.stop(sig) in (0, -sig)  # uvicorn re-raises the signal after a clean shutdown
    assert worker_pids(datadir) == []
