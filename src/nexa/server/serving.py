"""Run the router: in the foreground until a signal (`nexa serve`, draining requests in flight first),
or in a background thread (`LocalServer`)."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import resource
import socket
import sys
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from nexa.config import Settings
from nexa.errors import NexaError, out_of_files, shutting_down
from nexa.runtime import ModelManager
from nexa.runtime.memory import MIB
from nexa.server.app import create_app
from nexa.server.errors import nexa_error_response
from nexa.server.security import header_deadline_protocol
from nexa.store import Store

log = logging.getLogger("nexa.server")
# Open files asked for when the hard limit is unlimited, and macOS's OPEN_MAX (its kernel refuses more).
_MANY_FILES = 10240
GRACE = 8.0  # seconds requests in flight get to finish after SIGTERM or Ctrl-C


class _RefuseWhileDraining:
    """ASGI wrapper: once the drain has begun every new request gets the 503 the README promises, in its
    dialect's shape and with Retry-After, while the requests already running go on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.refusing = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.refusing and scope["type"] == "http":
            await nexa_error_response(shutting_down(), scope["path"])(scope, receive, send)
            return
        await self.app(scope, receive, send)


class _DrainingServer(uvicorn.Server):
    """On the first signal the manager drains: requests in flight get `GRACE` seconds, then the workers stop,
    so streams still running end with an error event rather than being cut silently. Meanwhile the port stays
    open and new requests get a 503 (uvicorn alone would close it at once: connection refused). The drain
    ends early when nothing is running; a second signal ends it at once."""

    def __init__(self, config: uvicorn.Config, manager: ModelManager, gate: _RefuseWhileDraining):
        super().__init__(config)
        self._manager = manager
        self._gate = gate
        self._drain_ends: float | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        asyncio.get_running_loop().set_exception_handler(_name_out_of_files)
        await super().startup(sockets)

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self._drain_ends is None:
            self._drain_ends = time.monotonic() + GRACE
            self._gate.refusing = True
            self._manager.drain(GRACE)
        else:
            self._drain_ends = 0.0
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        return await super().on_tick(counter) and not self._draining()

    def _draining(self) -> bool:
        """Requests are still running and the grace has time left."""
        return self._drain_ends is not None and time.monotonic() < self._drain_ends and bool(self.server_state.tasks)


def _name_out_of_files(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio reports an accept() that ran out of open files with a traceback, whose rendering needs open
    files too (it retries a second later); say what ran out and how to raise it instead."""
    full = out_of_files(context.get("exception"))
    if full is None:
        loop.default_exception_handler(context)
    else:
        log.warning("cannot accept a connection: %s", full.message)


def raise_open_file_limit() -> int:
    """Raise the soft limit on open files to the hard one (macOS: at most OPEN_MAX) and return it: each
    request in flight holds two sockets (client and worker), and a desktop's soft limit of 1,024 (macOS:
    256) ran out at a few hundred concurrent chats, with `Too many open files` even in the error logging."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, _MANY_FILES)
    if sys.platform == "darwin":
        target = min(target, _MANY_FILES)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
        except (ValueError, OSError):
            log.warning("could not raise the open-file limit from %d to %d; at most about %d requests can be "
                        "in flight at once (raise it with ulimit -n)", soft, target, soft // 2)
    return soft


# glibc's mallopt parameters, and the values set: buffers of up to 32 MiB (its largest) come from the heap, and up
# to 64 MiB of freed heap is kept for the next request.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD, _TRIM_THRESHOLD = 32 * MIB, 64 * MIB


def keep_freed_memory() -> None:
    """Have glibc keep the buffers a request frees for the next one. By default it hands a freed buffer of a few
    MB back to the kernel, and the next request's buffer is faulted in anew, page by page: 1,847 page faults and
    4 ms of the router's CPU for a 120 s clip's upload (3.8 MB), 28 % of its cost. The router's resident memory
    then stays near its peak. Other C libraries (macOS, musl) are left as they are."""
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
    mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)


def run(manager: ModelManager, settings: Settings) -> None:
    """Serve until SIGTERM or Ctrl-C; returns once every worker has stopped."""
    raise_open_file_limit()
    keep_freed_memory()
    host, port = settings.bind()
    gate = _RefuseWhileDraining(create_app(manager))
    config = uvicorn.Config(
        gate, host=host, port=port, log_config=None, log_level=settings.log_level,
        timeout_graceful_shutdown=GRACE + 2, access_log=settings.log_level == "debug",
        http=header_deadline_protocol(settings.body_timeout),
    )
    try:
        _DrainingServer(config, manager, gate).run()
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C once it has shut down cleanly (as uvicorn.run does)
        pass


class LocalServer:
    """The router in a background thread on a free loopback port (`nexa infer`, the benches): callers
    talk to it over HTTP exactly as to `nexa serve`. Leaving the `with` block stops it and its workers."""

    def __init__(self, settings: Settings):
        self.manager = ModelManager(Store(settings.datadir), settings)
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))  # bound now, so no other process can take the port
        self.base_url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        config = uvicorn.Config(
            create_app(self.manager), log_config=None, log_level="warning", access_log=False,
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        # uvicorn's own loop (uvloop where installed), as `nexa serve` runs on: asyncio's own loop made a 20 s
        # clip's transcription ~13 ms slower.
        self._loop = (config.get_loop_factory() or asyncio.new_event_loop)()
        self._thread = threading.Thread(target=self._serve, name="nexa-local-server", daemon=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._server.serve(sockets=[self._socket]))

    def start(self, timeout: float = 30.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise NexaError("the in-process nexa server did not start; try `nexa serve` and `nexa run` instead")
            time.sleep(0.02)

    def load(self, name: str) -> None:
        """Load the model now, so a failing load is reported before the chat opens and the first answer is fast."""
        manifest, quant = self.manager.resolve(name)
        future = asyncio.run_coroutine_threadsafe(self.manager.acquire(manifest, quant), self._loop)
        try:
            future.result().release()
        except BaseException:  # Ctrl-C while loading: do not leave the load running
            future.cancel()
            raise

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._socket.close()

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
