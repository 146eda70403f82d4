"""The threads pulls run on: a few of their own, so that downloads never hold the default executor's
threads, which model loads, the supervisor's store check and media decoding need. Every pull can be
stopped (a DELETE of the model, the web UI's cancel, the server's shutdown): it stops at its next chunk
and leaves its partial file for the next pull to resume."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from nexa.errors import HubError

if TYPE_CHECKING:
    from nexa.hub.auto import AutoPullEvents

T = TypeVar("T")
# Downloads at once; more wait their turn (holding no thread) in the order they came.
MAX_PULLS = 2


class PullStopped(HubError):
    def __init__(self, repo: str):
        super().__init__(f"the pull of {repo} was stopped; its partial files stay, pull it again to resume")


class _Stoppable:
    """A pull's events that raise PullStopped from the download's progress once `stop` is set."""

    def __init__(self, events: AutoPullEvents, repo: str, stop: threading.Event):
        self._events, self._repo, self._stop = events, repo, stop

    def __getattr__(self, name: str) -> Any:
        return getattr(self._events, name)

    def file(self, name: str, size: int) -> Callable[[int], None]:
        progress = self._events.file(name, size)

        def checked(done: int) -> None:
            if self._stop.is_set():
                raise PullStopped(self._repo)
            progress(done)

        return checked


class PullPool:
    """Runs pulls on `size` threads of their own and stops them on request."""

    def __init__(self, size: int = MAX_PULLS):
        self._pool = ThreadPoolExecutor(size, thread_name_prefix="nexa-pull")
        self._stops: dict[str, set[threading.Event]] = {}

    async def run(self, repo: str, pull: Callable[[AutoPullEvents], T], events: AutoPullEvents) -> T:
        """`pull(events)` on a pull thread; a cancelled caller stops it too (at its next chunk)."""
        stop = threading.Event()
        key = repo.lower()
        self._stops.setdefault(key, set()).add(stop)

        def guarded() -> T:
            if stop.is_set():
                raise PullStopped(repo)
            return pull(_Stoppable(events, repo, stop))  # type: ignore[arg-type]

        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, guarded)
        except asyncio.CancelledError:
            stop.set()
            raise
        finally:
            self._stops[key].discard(stop)
            if not self._stops[key]:
                del self._stops[key]

    def stop(self, repo: str) -> bool:
        """Stop every pull of `repo`; whether there was one."""
        stops = self._stops.get(repo.lower(), set())
        for stop in stops:
            stop.set()
        return bool(stops)

    def close(self) -> None:
        """Stop every pull (the server is shutting down) without waiting for their threads."""
        for stops in self._stops.values():
            for stop in stops:
                stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
