"""The saved prompt caches on disk: keyed on what makes them valid, newest restored first, bounded oldest first."""

from __future__ import annotations

import os
from pathlib import Path

from nexa.engine.spec import WorkerSpec
from nexa.runtime import slot_cache
from nexa.store import ModelType

SPEC = WorkerSpec(model_path="/m/model.gguf", model_type=ModelType.llm, alias="org/repo:Q4_0", ctx=4096, parallel=2,
                  threads=1, api_key="k" * 43)


def slot(folder: Path, name: str, size: int, age: float) -> Path:
    """A saved slot of `size` bytes written `age` seconds ago."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}{slot_cache.SUFFIX}"
    path.write_bytes(b"\0" * size)
    written = path.stat().st_mtime - age
    os.utime(path, (written, written))
    return path


def test_the_folder_changes_with_whatever_invalidates_a_cache(tmp_path: Path):
    here = slot_cache.folder_for(tmp_path, SPEC.alias, SPEC, "sha-a")
    assert here.parent == tmp_path and here.name.startswith("org-repo-Q4_0-")
    assert here == slot_cache.folder_for(tmp_path, SPEC.alias, SPEC.model_copy(update={"api_key": "x" * 43}), "sha-a")
    others = [slot_cache.folder_for(tmp_path, SPEC.alias, SPEC, "sha-b")] + [
        slot_cache.folder_for(tmp_path, SPEC.alias, SPEC.model_copy(update=change), "sha-a")
        for change in ({"ctx": 8192}, {"kv_cache_type": "q8_0"}, {"runtime": "/opt/llama-server"})]
    assert here not in others and len(set(others)) == len(others)
    assert slot_cache.engine_path(here) == f"{here}/"


def test_saved_slots_come_newest_first(tmp_path: Path):
    old, new = slot(tmp_path / "m", "slot0", 10, age=60), slot(tmp_path / "m", "slot1", 10, age=1)
    assert slot_cache.prepare(tmp_path / "m") == [new, old]
    assert slot_cache.prepare(tmp_path / "new") == [] and (tmp_path / "new").is_dir()  # llama-server checks it


def test_pruning_deletes_the_oldest_across_models_until_the_bound_holds(tmp_path: Path):
    oldest = slot(tmp_path / "a", "slot0", 400, age=300)
    older = slot(tmp_path / "b", "slot0", 400, age=200)
    newer = slot(tmp_path / "b", "slot1", 400, age=100)
    newest = slot(tmp_path / "a", "slot1", 400, age=0)
    assert slot_cache.prune(tmp_path, 1000) == [oldest, older]
    assert not oldest.exists() and not older.exists() and newer.exists() and newest.exists()
    assert slot_cache.prune(tmp_path, 1000) == []  # within the bound: nothing more goes
    assert slot_cache.prune(tmp_path, 0) == [newer, newest]
    assert list(tmp_path.iterdir()) == []  # emptied folders go too


def test_pruning_an_absent_folder_does_nothing(tmp_path: Path):
    assert slot_cache.prune(tmp_path / "prompt-cache", 0) == []
