"""Run the router under uvicorn until a signal, draining requests in flight first."""

from __future__ import annotations

from typing import Any

import uvicorn

from nexa.config import Settings
from nexa.runtime import ModelManager
from nexa.server.app import create_app

GRACE = 8.0  # seconds requests in flight get to finish after SIGTERM or Ctrl-C


class _DrainingServer(uvicorn.Server):
    """uvicorn stops accepting connections on a signal; this also refuses new requests on open ones (503)
    and, after the grace, stops the workers, so streams still running end with an error event rather than
    being cut silently when uvicorn gives up on them."""

    def __init__(self, config: uvicorn.Config, manager: ModelManager):
        super().__init__(config)
        self._manager = manager

    def handle_exit(self, sig: int, frame: Any) -> None:
        if not self.should_exit:
            self._manager.drain(GRACE)
        super().handle_exit(sig, frame)


def run(manager: ModelManager, settings: Settings) -> None:
    """Serve until SIGTERM or Ctrl-C; returns once every worker has stopped."""
    host, port = settings.bind()
    config = uvicorn.Config(
        create_app(manager), host=host, port=port, log_config=None, log_level=settings.log_level,
        timeout_graceful_shutdown=GRACE + 2, access_log=settings.log_level == "debug",
    )
    try:
        _DrainingServer(config, manager).run()
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C once it has shut down cleanly (as uvicorn.run does)
        pass
