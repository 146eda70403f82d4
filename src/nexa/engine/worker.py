"""Worker process entry point: `python -m nexa.engine.worker`, driven by nexa.runtime.worker.

Protocol: the router writes one JSON WorkerSpec line on stdin; the worker loads the
model and answers one JSON line on its private channel (the original stdout):
{"ready": true, "address": "http://127.0.0.1:PORT"} or {"ready": false, "error": "..."}.
It then serves until stdin closes (the router exited, even by kill -9) or SIGTERM.
"""

from __future__ import annotations

import json
import os
import sys


def _announce(channel: int, message: dict) -> None:
    os.write(channel, (json.dumps(message) + "\n").encode())


def main() -> None:
    # Keep stdout for the protocol alone: anything the engine prints goes to stderr.
    channel = os.dup(1)
    os.dup2(2, 1)
    line = sys.stdin.readline()
    try:
        from nexa.engine.params import build_params
        from nexa.engine.spec import WorkerSpec
        import xllamacpp

        server = xllamacpp.Server(build_params(WorkerSpec.model_validate_json(line)))
    except Exception as exc:  # every load failure becomes a message the router can show
        _announce(channel, {"ready": False, "error": f"{exc.__class__.__name__}: {exc}"})
        os._exit(1)
    address = server.listening_address
    if not address.startswith("http"):
        address = f"http://{address}"
    _announce(channel, {"ready": True, "address": address})
    sys.stdin.read()  # returns at EOF: the router is gone or wants us gone
    os._exit(0)  # skip interpreter teardown; the engine's threads need no goodbye


if __name__ == "__main__":
    main()
