"""Model files on a replica's node: found in its store, or pulled there once however many replicas start."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from unittest import mock

import pytest

from nexa.cluster.replica import locate, with_own_key
from nexa.engine.spec import WorkerSpec
from nexa.errors import ModelLoadFailed
from nexa.runtime.worker import Worker
from nexa.store import ModelType, Store
from tests.fixtures.fake_hub import FakeHub


def spec(alias: str) -> WorkerSpec:
    return WorkerSpec(model_path="/on/the/ingress/node.gguf", model_type=ModelType.llm, alias=alias, ctx=512,
                      parallel=1, threads=1, api_key="-")


def gets(hub: FakeHub) -> list:
    """Whole downloads of the model file (ranged reads are type detection; the hub is shared by the session)."""
    return [seen for seen in hub.requests_for("tiny-Q4_K_M.gguf") if seen.method == "GET" and seen.range is None]


def test_two_replicas_on_a_node_without_the_model_pull_it_once(fake_hub: FakeHub, tmp_path: Path) -> None:
    node_store = tmp_path / "node-store"
    before = len(gets(fake_hub))
    located: list[WorkerSpec] = []
    with mock.patch.dict(os.environ, {"HF_ENDPOINT": fake_hub.url, "HF_HOME": str(tmp_path / "hf")}):
        replicas = [threading.Thread(target=lambda: located.append(locate(spec("test-org/Tiny-GGUF:Q4_K_M"), node_store)))
                    for _ in range(2)]
        for replica in replicas:
            replica.start()
        for replica in replicas:
            replica.join(60)
    assert len(located) == 2
    paths = {s.model_path for s in located}
    assert len(paths) == 1 and Path(paths.pop()).is_relative_to(node_store)
    assert len(gets(fake_hub)) == before + 1  # the second replica waited for the first one's download


def test_a_model_already_in_the_nodes_store_is_used_without_the_network(session_store: Store) -> None:
    with mock.patch.dict(os.environ, {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1"}):
        found = locate(spec("test/qwen3-text:F32"), session_store.root)
    assert Path(found.model_path).exists() and found.model_path != "/on/the/ingress/node.gguf"


def test_each_replica_gives_its_worker_a_random_key_and_a_worker_refuses_the_placeholder(tmp_path: Path) -> None:
    """On Ray every engine had the key '-': any local user of any node could call it."""
    placeholder = spec("test/qwen3-text")
    first, second = with_own_key(placeholder), with_own_key(placeholder)
    assert first.api_key != second.api_key and not first.guessable_key() and placeholder.guessable_key()
    with pytest.raises(ModelLoadFailed, match="guessable API key"):
        asyncio.run(Worker(placeholder.model_copy(update={"model_path": str(tmp_path / "any.gguf")})).start(30))
