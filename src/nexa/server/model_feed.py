"""Model states as the web UI sees them, and the /models/sse feed that reports their changes.

States come from the manager's read-only views (loaded, loading, back-off failures), so the feed needs no
hook inside the manager: while someone listens, one task compares the states every `interval` seconds
and publishes what changed. Pulls publish their own progress on the same feed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from nexa.runtime import ModelManager
from nexa.wire.llama import ModelArchitecture, ModelStatus

PING = b": ping\n\n"


@dataclass(frozen=True)
class State:
    value: str  # unloaded, loading or loaded
    failure: tuple[str, int] | None = None  # reason, failures in a row

    def status(self) -> ModelStatus:
        if self.failure is None:
            return ModelStatus(value=self.value)  # type: ignore[arg-type]
        return ModelStatus(value=self.value, failed=True, exit_code=1, reason=self.failure[0])  # type: ignore[arg-type]


UNLOADED = State("unloaded")
# capabilities (nexa.compat.tools) → the UI's input modalities
_MODALITIES = {"vision": "image", "audio": "audio"}


def architecture(capabilities: list[str]) -> ModelArchitecture:
    """What the UI lets the user attach to a model's messages, known before it loads."""
    return ModelArchitecture(input_modalities=["text", *(_MODALITIES[c] for c in capabilities if c in _MODALITIES)])


def states(manager: ModelManager) -> dict[str, State]:
    """Every model that is not plainly unloaded; cheap (no disk), so the feed can poll it."""
    out = {model_id: State("unloaded", failure) for model_id, failure in manager.failures().items()}
    out.update({model_id: State("loading") for model_id in manager.loading()})
    out.update({model.id: State("loaded") for model in manager.loaded()})
    return out


def record(model: str, event: str, data: dict[str, Any] | None = None) -> bytes:
    body: dict[str, Any] = {"model": model, "event": event}
    if data is not None:
        body["data"] = data
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


def status_record(model: str, state: State) -> bytes:
    data: dict[str, Any] = {"status": state.value}
    if state.failure is not None:
        data["exit_code"] = 1
    return record(model, "model_status", data)


class ModelFeed:
    """Fan-out of /models/sse records to every listener. A listener too slow to keep `backlog` records
    is dropped (its stream ends; the UI reconnects and gets the states afresh)."""

    def __init__(self, manager: ModelManager, interval: float = 0.2, backlog: int = 1024, ping: float = 15.0):
        self._manager = manager
        self._interval = interval
        self._backlog = backlog
        self._ping = ping
        self._listeners: set[asyncio.Queue[bytes | None]] = set()
        self._seen: dict[str, State] = {}
        self._watcher: asyncio.Task[None] | None = None

    def publish(self, data: bytes) -> None:
        """Send one record to every listener; call on the event loop."""
        for queue in list(self._listeners):
            try:
                queue.put_nowait(data)
            except asyncio.QueueFull:
                self._end(queue)

    def _end(self, queue: asyncio.Queue[bytes | None]) -> None:
        """End one listener's stream: its end mark goes in, in place of its oldest record if it is full."""
        self._listeners.discard(queue)
        if queue.full():
            queue.get_nowait()
        queue.put_nowait(None)

    async def listen(self) -> AsyncIterator[bytes]:
        """The records for one listener: every model's state now, then changes as they happen."""
        if self._manager.closing:
            return
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(self._backlog)
        self._listeners.add(queue)
        if self._watcher is None or self._watcher.done():
            self._seen = states(self._manager)
            self._watcher = asyncio.create_task(self._watch(), name="nexa-model-feed")
        try:
            for model_id, state in self._seen.items():
                yield status_record(model_id, state)
            while True:
                try:
                    data = await asyncio.wait_for(queue.get(), self._ping)
                except asyncio.TimeoutError:
                    yield PING  # also how a listener that left is noticed
                    continue
                if data is None:
                    return
                yield data
        finally:
            self._listeners.discard(queue)

    async def _watch(self) -> None:
        while self._listeners:
            await asyncio.sleep(self._interval)
            if self._manager.closing:  # shutdown waits for open responses: end every stream now
                for queue in list(self._listeners):
                    self._end(queue)
                return
            now = states(self._manager)
            for model_id in self._seen.keys() | now.keys():
                state = now.get(model_id, UNLOADED)
                if self._seen.get(model_id, UNLOADED) != state:
                    self.publish(status_record(model_id, state))
            self._seen = now
