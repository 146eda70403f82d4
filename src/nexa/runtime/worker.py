"""A handle on one worker process: start it, know its address, stop it."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import signal
import sys
from collections import deque
from collections.abc import AsyncIterator
from contextlib import aclosing

import httpx

from nexa.engine.spec import WorkerSpec
from nexa.errors import ModelLoadFailed
from nexa.runtime.memory import MIB, Footprint, LoadReport, file_size

log = logging.getLogger("nexa.worker")

_STDERR_TAIL = 30
# llama.cpp's log line: time stamp, level letter, text ("0.00.007.634 E llama_model_load: error loading ...").
_LOG_LINE = re.compile(r"\s*\d+(?:\.\d+)+ ([A-Z]) (.*)")
# Both runtimes log this once the model is loaded, before the worker says it is ready; the load report
# (each buffer's size) comes before it.
_LISTENING = "listening on http"
_REPORT_WAIT = 2.0
# Bytes of one engine log line kept: at verbosity 4 an engine logs a request's whole prompt and grammar on
# one line, and asyncio's readline gives up for good on a line over 64 KiB.
LINE_CAP = 8 * 1024
_CHUNK = 64 * 1024
# Seconds between reads of a loaded engine's log (unless the debug log wants its lines). The engine writes
# each line in three pieces, dozens of lines a request, and a pipe read as it comes is a wake-up of the
# router's loop: ~0.6 ms of router CPU a transcription, which a busy engine misses. Between reads the pipe
# is not watched at all (asyncio's transport would read it as it comes, whoever reads the stream). The
# engine's log has a thread and a buffer of its own, so a full pipe never holds up its work.
CALM_PACE = 0.1


async def log_lines(stream: asyncio.StreamReader, cap: int = LINE_CAP) -> AsyncIterator[str]:
    """The stream's lines, read in chunks, each cut to `cap` bytes (saying how much was cut): a line of
    any length costs the router `cap` bytes and never stops the reading."""
    line, cut = bytearray(), 0
    while chunk := await stream.read(_CHUNK):
        *ended, rest = chunk.split(b"\n")
        for piece in ended:
            yield _decoded(line + piece[: cap - len(line)], cut + max(0, len(piece) - (cap - len(line))))
            line, cut = bytearray(), 0
        room = cap - len(line)
        line += rest[:room]
        cut += max(0, len(rest) - room)
    if line or cut:
        yield _decoded(line, cut)


def _decoded(line: bytes, cut: int) -> str:
    text = line.decode(errors="replace").rstrip()
    return f"{text} [... {cut} more bytes]" if cut else text


def engine_error(line: str) -> str | None:
    """The text of an engine log line at error level, without time stamp and level; None for other lines."""
    match = _LOG_LINE.fullmatch(line)
    return match.group(2).strip() if match and match.group(1) == "E" else None


async def busy_slots(client: httpx.AsyncClient, base_url: str, headers: dict[str, str]) -> int | None:
    """Slots generating right now, from the engine's /slots; None when the worker does not answer."""
    try:
        response = await asyncio.wait_for(client.get(base_url + "/slots", headers=headers), 2.0)
        response.raise_for_status()
        return sum(1 for slot in response.json() if slot.get("is_processing"))
    except (httpx.HTTPError, asyncio.TimeoutError, ValueError, TypeError, AttributeError):
        return None


class Worker:
    """One model in one process, in its own process group so that terminal signals reach only the router."""

    def __init__(self, spec: WorkerSpec):
        self.spec = spec
        self.base_url = ""
        self._process: asyncio.subprocess.Process | None = None
        self._stderr_tail: deque[str] = deque(maxlen=_STDERR_TAIL)
        self._first_error: str | None = None  # the cause comes first; later error lines repeat "failed to load"
        self._drain: asyncio.Task | None = None
        self._log_pipe: asyncio.ReadTransport | None = None
        self._report = LoadReport()
        self._loaded = asyncio.Event()  # the engine's log has passed its load report

    @staticmethod
    def new_api_key() -> str:
        return secrets.token_urlsafe(32)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.returncode is None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process else None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.spec.api_key}"}

    @property
    def slots(self) -> int:
        """Requests it runs at once; more wait in its engine's queue."""
        return self.spec.parallel

    async def busy_slots(self, client: httpx.AsyncClient) -> int | None:
        return await busy_slots(client, self.base_url, self.headers)

    async def replicas(self) -> list[dict] | None:
        """None: one process on this machine (a model on a Ray cluster lists its replicas here)."""
        return None

    async def start(self, timeout: float) -> None:
        """Spawn the process and wait until the model is loaded; ModelLoadFailed says why it was not."""
        log_fd, engine_log = os.pipe()  # the router's own pipe: it pauses its reading (_drain_stderr)
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "nexa.engine.worker",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=engine_log,
                start_new_session=True,
            )
        except BaseException:
            os.close(log_fd)
            raise
        finally:
            os.close(engine_log)
        stream = asyncio.StreamReader()
        self._log_pipe, _ = await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stream), os.fdopen(log_fd, "rb", buffering=0))
        self._drain = asyncio.create_task(self._drain_stderr(stream))
        assert self._process.stdin and self._process.stdout
        self._process.stdin.write(self.spec.model_dump_json().encode() + b"\n")
        await self._process.stdin.drain()
        try:
            line = await asyncio.wait_for(self._process.stdout.readline(), timeout)
        except asyncio.TimeoutError:
            await self.close()
            raise ModelLoadFailed(f"loading took longer than {timeout:.0f} s; raise --load-timeout") from None
        message = json.loads(line) if line.strip() else {}
        if not message.get("ready"):
            await self.close()  # also reads the rest of stderr, where the engine said why
            raise ModelLoadFailed(self._load_error(message.get("error")))
        self.base_url = message["address"]
        try:  # stderr is read apart from the ready line: let it catch up with the load report
            await asyncio.wait_for(self._loaded.wait(), _REPORT_WAIT)
        except asyncio.TimeoutError:
            pass
        log.info("worker %s serving %s at %s", self.pid, os.path.basename(self.spec.model_path), self.base_url)

    def _load_error(self, announced: str | None) -> str:
        """Why the load failed: the engine's first error line (its exception says only "Failed to init
        server"), else what the worker announced, else the most telling line it printed."""
        return self._first_error or announced or self._last_error()

    def _last_error(self) -> str:
        """The most telling line without a log level (an abort's GGML_ASSERT): the last error-looking one, else the last one."""
        lines = [line for line in self._stderr_tail if line.strip()]
        for line in reversed(lines):
            lowered = line.lower()
            if "error" in lowered or "failed" in lowered or "assert" in lowered:
                return line.strip()
        return lines[-1].strip() if lines else "the worker exited without a message"

    async def _drain_stderr(self, stream: asyncio.StreamReader) -> None:
        """The engine's log, line by line while the model loads (its load report, its first error). Once it is
        loaded, only the debug log wants its lines (dozens a request): otherwise the log is still read, so
        that the pipe never stays full, but every CALM_PACE seconds, and not split or decoded."""
        assert self._log_pipe
        async with aclosing(log_lines(stream)) as lines:
            async for line in lines:
                self._stderr_tail.append(line)
                if self._first_error is None:
                    self._first_error = engine_error(line)
                if not self._loaded.is_set():
                    self._report.feed(line)
                    if _LISTENING in line:
                        self._loaded.set()
                log.debug("[%s] %s", self.pid, line)
                if self._loaded.is_set() and not log.isEnabledFor(logging.DEBUG):
                    break
        while await stream.read(_CHUNK):
            self._log_pipe.pause_reading()
            await asyncio.sleep(CALM_PACE)
            self._log_pipe.resume_reading()

    def footprint(self) -> Footprint | None:
        """What the loaded model holds in RAM and on each GPU, as its engine reported it; None if it did not."""
        return self._report.footprint(file_size(self.spec.mmproj_path), self.spec.prompt_cache_mib * MIB)

    async def wait(self) -> int:
        """Wait for the process to exit; returns its exit code."""
        assert self._process
        return await self._process.wait()

    async def close(self, grace: float = 5.0) -> None:
        """Stop the process: stdin EOF and SIGTERM, then SIGKILL after `grace` seconds. Idempotent."""
        process = self._process
        if process is None:
            return
        if process.returncode is None:
            if process.stdin and not process.stdin.is_closing():
                process.stdin.close()
            self._signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), grace)
            except asyncio.TimeoutError:
                self._signal(signal.SIGKILL)
                await process.wait()
        if self._drain:
            await asyncio.wait([self._drain], timeout=1.0)
        if self._log_pipe:  # a stray child of the engine may hold the pipe open: no end of file comes
            self._log_pipe.close()
        log.info("worker %s stopped (exit %s)", process.pid, process.returncode)

    def _signal(self, sig: signal.Signals) -> None:
        try:
            os.killpg(self._process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
