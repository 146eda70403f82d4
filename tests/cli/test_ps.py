"""`nexa ps` as a table: a GPU column appears where a runtime has a GPU."""

from __future__ import annotations

import pytest
from rich.console import Console

from nexa.cli import ps as ps_command
from nexa.wire.admin import RunningModel, RunningModelList

GIB = 1024**3


def listing(device_memory: dict[str, int], budgets: dict[str, int]) -> RunningModelList:
    model = RunningModel(
        id="org/model:Q4_K_M", type="llm", pid=42, memory=GIB, memory_estimate=GIB // 2, device_memory=device_memory,
        ctx=4096, parallel=4, slots_busy=1, in_flight=1, queued=0, idle_seconds=0, keep_alive=300, expires_in=None,
        loaded_at=0,
    )
    return RunningModelList(data=[model], memory_budget=8 * GIB, memory_estimate=GIB // 2,
                            device_memory_budget=budgets, device_memory=device_memory)


def shown(monkeypatch: pytest.MonkeyPatch, running: RunningModelList) -> str:
    monkeypatch.setattr(ps_command, "fetch", lambda url, key: running)
    wide = Console(width=200)
    monkeypatch.setattr(ps_command, "console", wide)
    with wide.capture() as captured:
        ps_command.ps(host="127.0.0.1:18181", api_key=None)
    return captured.get()


def test_a_gpu_model_shows_what_it_holds_on_each_gpu_against_the_budget(monkeypatch):
    text = shown(monkeypatch, listing({"CUDA0": 3 * GIB}, {"CUDA0": 72 * GIB}))
    assert "GPU" in text and "3.2 GB CUDA0" in text and "of 77.3 GB on CUDA0" in text


def test_without_a_gpu_there_is_no_gpu_column(monkeypatch):
    text = shown(monkeypatch, listing({}, {}))
    assert "GPU" not in text and "org/model:Q4_K_M" in text
