"""Prompt caches that outlive a worker: each slot's KV cache is saved to disk when its model unloads and restored
when the model loads again, so an agent's next session after a keep-alive or budget unload skips its long prefix.

The engine writes and reads the files itself (llama.cpp's POST /slots/{id}?action=save|restore, inside the folder it
was given as --slot-save-path); nexa picks that folder, keyed on what makes a saved cache valid (the model's files,
its context size, KV cache type and runtime), and keeps all such folders within a disk bound, oldest files first.
The file-system parts run in a thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from pathlib import Path

import httpx

from nexa.engine.spec import WorkerSpec
from nexa.runtime.memory import MIB, gib
from nexa.runtime.worker import Worker

log = logging.getLogger("nexa.slot_cache")

FOLDER = "prompt-cache"  # under the data dir, beside the store's models/
SUFFIX = ".slot"
SAVE_TIMEOUT = 30.0  # seconds one unload may spend saving: an unload that waits longer helps nobody
RESTORE_TIMEOUT = 30.0
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def folder_for(root: Path, model_id: str, spec: WorkerSpec, weights_sha: str) -> Path:
    """Where `spec`'s saved slots live: a cache is only valid for the same weights, context, KV type and runtime."""
    key = json.dumps([weights_sha, spec.mmproj_path, spec.ctx, spec.kv_cache_type, spec.runtime])
    return root / f"{_UNSAFE.sub('-', model_id)}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def engine_path(folder: Path) -> str:
    """The folder as the engine wants it: llama.cpp appends the file name to it as a string."""
    return str(folder) + "/"


def prepare(folder: Path) -> list[Path]:
    """The folder's saved slots, newest first; makes the folder, which llama-server wants to exist at its start."""
    folder.mkdir(parents=True, exist_ok=True)
    return sorted(folder.glob("*" + SUFFIX), key=lambda path: path.stat().st_mtime, reverse=True)


def prune(root: Path, limit: int) -> list[Path]:
    """Delete the oldest saved slots under `root` until they take at most `limit` bytes, and the folders that
    leaves empty; returns what was deleted."""
    if not root.is_dir():
        return []
    files = sorted(((p.stat(), p) for p in root.glob("*/*" + SUFFIX)), key=lambda item: item[0].st_mtime)
    total = sum(stat.st_size for stat, _ in files)
    deleted = []
    for stat, path in files:
        if total <= limit:
            break
        path.unlink(missing_ok=True)
        total -= stat.st_size
        deleted.append(path)
    for folder in {path.parent for path in deleted}:
        if not any(folder.iterdir()):
            folder.rmdir()
    return deleted


def forget(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


async def save(base_url: str, headers: dict[str, str], folder: Path) -> list[Path]:
    """Have the engine save every idle slot that holds a prompt into `folder`; returns the files written."""
    written: list[Path] = []
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)  # pruning may have removed it since
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=SAVE_TIMEOUT) as client:
        response = await client.get("/slots")
        response.raise_for_status()
        # Every idle slot: one restored at load and not used since says nothing of its prompt, but holds it.
        idle = [slot["id"] for slot in response.json() if not slot.get("is_processing")]
        tokens = size = 0
        for slot in idle:
            name = f"slot{slot}{SUFFIX}"
            result = await client.post(f"/slots/{slot}", params={"action": "save"}, json={"filename": name})
            result.raise_for_status()
            body = result.json()
            if body.get("n_saved"):
                written.append(folder / name)
                tokens, size = tokens + body["n_saved"], size + body.get("n_written", 0)
            else:
                await asyncio.to_thread(forget, [folder / name])
    if written:
        log.info("saved %d prompt cache(s) to %s: %d tokens, %.1f MiB", len(written), folder, tokens, size / MIB)
    return written


async def restore(base_url: str, headers: dict[str, str], files: list[Path], slots: int) -> int:
    """Load the newest saved slots into the engine's slots 0, 1, ..., before it serves; each file is deleted once
    read (the slot holds it now, and the next unload saves it again) or when the engine refuses it. Returns the
    tokens restored."""
    tokens = size = 0
    done: list[Path] = []
    try:
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=RESTORE_TIMEOUT) as client:
            for slot, path in enumerate(files[:slots]):
                done.append(path)
                result = await client.post(f"/slots/{slot}", params={"action": "restore"}, json={"filename": path.name})
                if result.status_code != 200:
                    log.warning("could not restore the prompt cache %s (deleted): %s", path, result.text[:200])
                    continue
                body = result.json()
                tokens, size = tokens + body.get("n_restored", 0), size + body.get("n_read", 0)
    finally:
        await asyncio.to_thread(forget, done)
    if tokens:
        log.info("restored %d prompt cache(s) from %s: %d tokens, %.1f MiB", len(done), files[0].parent, tokens,
                 size / MIB)
    return tokens


# What a failed save or restore may raise: it is logged, and the model loads or unloads without its caches.
_FAILED = (OSError, httpx.HTTPError, asyncio.TimeoutError, ValueError, KeyError, TypeError)


async def save_for(worker: Worker, root: Path, limit: int) -> None:
    """Have a stopping engine save the prompts its slots hold (a crashed one has nothing to say), then keep the
    saved caches under `root` within `limit` bytes, oldest first."""
    folder = worker.spec.slot_save_path
    if not folder or not worker.alive:
        return
    try:
        await asyncio.wait_for(save(worker.base_url, worker.headers, Path(folder)), SAVE_TIMEOUT)
        if deleted := await asyncio.to_thread(prune, root, limit):
            log.info("deleted the %d oldest saved prompt cache(s) to stay within %s", len(deleted), gib(limit))
    except _FAILED as exc:
        log.warning("could not save the prompt caches of %s: %s", worker.spec.alias, exc or type(exc).__name__)


async def saved_for(worker: Worker) -> list[Path]:
    """The prompt caches the model's last worker saved, newest first. Makes their folder, which llama-server checks
    at its start; where that fails, this worker saves nothing."""
    folder = worker.spec.slot_save_path
    if not folder:
        return []
    try:
        return await asyncio.to_thread(prepare, Path(folder))
    except OSError as exc:
        log.warning("the prompt caches of %s are not saved: %s", worker.spec.alias, exc)
        worker.spec = worker.spec.model_copy(update={"slot_save_path": None})
        return []


async def restore_for(worker: Worker, files: list[Path]) -> None:
    """Give a model just loaded the prompt caches its slots held when it last unloaded, before it serves."""
    if not files:
        return
    try:
        await asyncio.wait_for(restore(worker.base_url, worker.headers, files, worker.spec.parallel), RESTORE_TIMEOUT)
    except _FAILED as exc:
        log.warning("could not restore the prompt caches of %s: %s", worker.spec.alias, exc or type(exc).__name__)
