"""A llama-server binary as the worker's engine: this worker process starts it and stands for it.

The router's side (nexa.runtime.worker) is the same for both runtimes: this process speaks the worker
protocol on stdin/stdout while the binary serves llama-server's HTTP API itself. The binary dies with this
process (PR_SET_PDEATHSIG, even when this one is SIGKILLed), this process leaves when stdin closes or the
binary exits, and both are in the router's process group for the worker, so no binary outlives nexa.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable

from nexa.engine.params import llama_server_args
from nexa.engine.spec import WorkerSpec

_LISTENING = re.compile(rb"listening on (http://127\.0\.0\.1:\d+)")
# The same log line shape as the in-process engine's, which the router reads for the cause of a failure.
_LOG_FLAGS = ["--log-prefix", "--log-timestamps", "--log-colors", "off"]
_PR_SET_PDEATHSIG = 1
_STOP_GRACE = 5.0
_LIBC = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    """Runs in the child before exec: this process is single-threaded then, so preexec_fn is safe."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _forward(stream, until: Callable[[bytes], bytes | None] | None = None) -> bytes | None:
    """Copy the binary's log to our stderr (the router reads it there); stop early at the first line for
    which `until` returns a value, and return that value."""
    for line in stream:
        os.write(2, line)
        found = until(line) if until else None
        if found:
            return found
    return None


def _stop_on_eof(child: subprocess.Popen) -> None:
    sys.stdin.read()  # returns at EOF: the router is gone or wants us gone
    child.terminate()
    try:
        child.wait(_STOP_GRACE)
    except subprocess.TimeoutExpired:
        child.kill()


def serve(spec: WorkerSpec, announce: Callable[[dict], None]) -> int:
    """Start the binary, announce its address once it has loaded the model, serve until either side ends;
    returns the exit code this worker should leave with."""
    env = {**os.environ, "LLAMA_API_KEY": spec.api_key}  # not argv: other users can read that
    try:
        child = subprocess.Popen(
            [spec.runtime, *llama_server_args(spec), *_LOG_FLAGS], env=env,
            stdin=subprocess.DEVNULL, stdout=2, stderr=subprocess.PIPE, preexec_fn=_die_with_parent,
        )
    except OSError as exc:
        announce({"ready": False, "error": f"cannot run {spec.runtime}: {exc.strerror}; "
                                           "rebuild it with: nexa runtime build, or choose --runtime xllamacpp"})
        return 1
    assert child.stderr
    found = _forward(child.stderr, lambda line: (m := _LISTENING.search(line)) and m.group(1))
    if not found:
        code = child.wait()
        announce({"ready": False, "error": f"{os.path.basename(spec.runtime)} exited with code {code}"})
        return 1
    announce({"ready": True, "address": found.decode()})
    log = threading.Thread(target=_forward, args=(child.stderr,), daemon=True)
    log.start()
    threading.Thread(target=_stop_on_eof, args=(child,), daemon=True).start()
    code = child.wait()
    log.join(_STOP_GRACE)  # a crash's last words (an assert) reach the router before this worker exits
    return code if code >= 0 else 128 - code  # killed by a signal: the shell's convention
