"""Worker process entry point: `python -m nexa.engine.worker`, driven by nexa.runtime.worker.

Protocol: the router writes one JSON WorkerSpec line on stdin; the worker loads the
model and answers one JSON line on its private channel (the original stdout):
{"ready": true, "address": "http://127.0.0.1:PORT"} or {"ready": false, "error": "..."}.
It then serves until stdin closes (the router exited, even by kill -9) or SIGTERM.

The spec's runtime says what serves: xllamacpp's engine in this process, or a llama-server binary
that this process starts and stands for (nexa.engine.llama_server).
"""

from __future__ import annotations

import json
import os
import sys


def _announcer(channel: int):
    def announce(message: dict) -> None:
        os.write(channel, (json.dumps(message) + "\n").encode())
    return announce


def _serve_in_process(spec, announce) -> int:
    try:
        from nexa.engine.params import build_params
        import xllamacpp

        server = xllamacpp.Server(build_params(spec))
    except Exception as exc:  # every load failure becomes a message the router can show
        announce({"ready": False, "error": f"{exc.__class__.__name__}: {exc}"})
        return 1
    address = server.listening_address
    if not address.startswith("http"):
        address = f"http://{address}"
    announce({"ready": True, "address": address})
    sys.stdin.read()  # returns at EOF: the router is gone or wants us gone
    return 0


def main() -> None:
    # Keep stdout for the protocol alone: anything the engine prints goes to stderr.
    channel = os.dup(1)
    os.dup2(2, 1)
    announce = _announcer(channel)
    try:
        from nexa.engine.spec import WorkerSpec

        spec = WorkerSpec.model_validate_json(sys.stdin.readline())
    except Exception as exc:  # noqa: BLE001 - a bad spec is the router's bug; say so instead of a traceback
        announce({"ready": False, "error": f"bad worker spec: {exc}"})
        os._exit(1)
    if spec.guessable_key():  # any local user could call the engine
        announce({"ready": False, "error": "refusing to serve with a guessable API key; each worker needs a random "
                                           "key of its own (Worker.new_api_key)"})
        os._exit(1)
    if spec.runtime == "xllamacpp":
        code = _serve_in_process(spec, announce)
    else:
        from nexa.engine.llama_server import serve

        code = serve(spec, announce)
    os._exit(code)  # skip interpreter teardown; the engine's threads need no goodbye


if __name__ == "__main__":
    main()
