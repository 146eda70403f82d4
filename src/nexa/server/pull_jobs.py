"""Pulls the web UI starts (POST /models): in the background, one per model at a time, with progress
records on the /models/sse feed. The pull itself is `nexa pull --yes` (nexa.hub.auto), as /api/pull's."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from nexa.errors import NexaError
from nexa.hub.auto import pull_named
from nexa.server.model_feed import ModelFeed, record
from nexa.server.pull_pool import PullPool
from nexa.store import ModelRef, Store

if TYPE_CHECKING:
    from nexa.hub.resolve import RepoFiles

log = logging.getLogger("nexa.server")


class _FeedEvents:
    """AutoPullEvents as llama-server's download_progress records: bytes done and total per file, at most
    every `interval` seconds. Called from the pull's thread; records are posted to the event loop."""

    def __init__(self, name: str, post: Callable[[bytes], None], interval: float = 0.2):
        self._name = name
        self._post = post
        self._interval = interval
        self._files: dict[str, dict[str, int]] = {}
        self._last = 0.0

    def status(self, text: str) -> None:
        log.info("pull of %s: %s", self._name, text)

    def listed(self, files: RepoFiles) -> None:
        pass  # sizes come with each file

    def waiting(self, repo: str) -> None:
        log.info("pull of %s waits for another pull of %s", self._name, repo)

    def file(self, name: str, size: int) -> Callable[[int], None]:
        self._files[name] = {"done": 0, "total": size}

        def progress(done: int) -> None:
            self._files[name]["done"] = done
            now = time.monotonic()
            if done >= size or now - self._last >= self._interval:
                self._last = now
                self._send()

        self._send()
        return progress

    def _send(self) -> None:
        files = {name: dict(counts) for name, counts in self._files.items()}
        self._post(record(self._name, "download_progress", {"progress": files}))


class PullJobs:
    """The pulls under way, by repo: a second POST for a repo being pulled is refused, not raced."""

    def __init__(self, store: Store, feed: ModelFeed, pulls: PullPool):
        self._store = store
        self._feed = feed
        self._pulls = pulls
        self._jobs: dict[str, asyncio.Task[None]] = {}

    def running(self, ref: ModelRef) -> bool:
        return ref.repo.lower() in self._jobs

    def start(self, name: str, ref: ModelRef) -> None:
        """Pull `ref` in the background; `name` (as the client wrote it) labels its feed records."""
        key = ref.repo.lower()
        task = asyncio.create_task(self._run(name, ref), name=f"nexa-pull-{key}")
        self._jobs[key] = task
        task.add_done_callback(lambda _: self._jobs.pop(key, None))

    async def _run(self, name: str, ref: ModelRef) -> None:
        loop = asyncio.get_running_loop()
        events = _FeedEvents(name, lambda data: loop.call_soon_threadsafe(self._feed.publish, data))
        try:
            await self._pulls.run(ref.repo, functools.partial(pull_named, self._store, ref), events)
        except Exception as exc:  # noqa: BLE001 - nobody awaits this task: the feed is the only report
            message = exc.message if isinstance(exc, NexaError) else "the pull failed; the server log has details"
            if not isinstance(exc, NexaError):
                log.exception("pull of %s failed", name)
            self._feed.publish(record(name, "download_failed", {"error": message}))
            return
        self._feed.publish(record(name, "download_finished"))
        self._feed.publish(record(name, "models_reload"))
