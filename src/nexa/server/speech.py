"""Speech to text on nexa's chat path: check the model and the file, then transcribe piece by piece.

A recording is decoded and cut (nexa.media.audio) in a thread before any model is leased, so a bad
file never loads a model. Each piece is then one streamed chat request through `start_chat`, exactly as a
chat client's audio would be (names, media rules, leases, the engine's errors), while one lease held for
the whole recording keeps the model loaded between pieces. Pieces run side by side, as many as the model
has slots, so the engine batches them as it would one long prompt; the transcript still streams in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import httpx

from nexa.media import audio as media_audio
from nexa.media.resolve import MediaPolicy
from nexa.store.facts import media_support
from nexa.compat.transcripts import Span, Task, Transcript, piece_request
from nexa.errors import InvalidRequest, WrongModelType
from nexa.runtime import ModelManager
from nexa.server.chat import start_chat
from nexa.server.metrics import note_audio
from nexa.server.relay import open_chunks
from nexa.store import Manifest, ModelType


@dataclass(frozen=True)
class Recording:
    """A client's file, decoded and cut."""

    pieces: list[media_audio.Piece]
    duration: float


async def audio_model(manager: ModelManager, name: str, route: str) -> tuple[Manifest, str]:
    """The resolved model, if it reads audio; else a 404 naming the kind of model the route needs."""
    manifest, quant = manager.resolve(name)
    generative = manifest.model_type in (ModelType.llm, ModelType.vlm)
    if generative and (await asyncio.to_thread(media_support, manifest, manager.store.model_dir(manifest.name))).audio:
        return manifest, quant
    what = "a text model without an audio projector" if generative else f"an {manifest.model_type.value}"
    raise WrongModelType(
        f"{route} needs an audio model (a vlm pulled with an audio projector, mmproj, e.g. "
        f"ggml-org/Voxtral-Mini-3B-2507-GGUF), but '{manifest.name}' is {what}",
        param="model", code="wrong_model_type",
    )


async def read_recording(data: bytes, filename: str, max_seconds: float) -> Recording:
    """Decode and cut the file in a thread; a 400 naming the file and what is wrong with it otherwise."""
    if not data:
        raise InvalidRequest(f"the file '{filename}' is empty; send an audio file", param="file", code="invalid_audio")

    def prepare() -> Recording:
        samples = media_audio.decode(data, max_seconds)
        return Recording(media_audio.cut(samples), samples.size / media_audio.RATE)

    try:
        return await asyncio.to_thread(prepare)
    except media_audio.AudioProblem as exc:
        code = "audio_too_long" if isinstance(exc, media_audio.TooLong) else "invalid_audio"
        raise InvalidRequest(f"the file '{filename}' cannot be transcribed: {exc}", param="file", code=code) from None


@dataclass(frozen=True)
class Job:
    """One transcription: the model, the recording and what the client asked."""

    model: str
    manifest: Manifest
    quant: str
    recording: Recording
    task: Task
    language: str | None
    prompt: str | None
    temperature: float | None

    def transcript(self) -> Transcript:
        return Transcript(self.task, self.language, self.temperature)


# A piece's share of the slots' one KV cache: a window's audio tokens (750-822 for Whisper-style encoders), the
# instruction and the text it gives. Pieces run side by side only as far as their shares fit the context.
PIECE_TOKENS = 1024


def side_by_side(slots: int, context: int) -> int:
    """How many pieces may run at once: one per slot, as far as the shared context holds them."""
    return max(1, min(slots, context // PIECE_TOKENS))


async def transcript_events(
    job: Job, transcript: Transcript, manager: ModelManager, media: MediaPolicy, client: httpx.AsyncClient
) -> AsyncIterator[dict[str, Any]]:
    """OpenAI's stream events for the job, in order, ending with `transcript.text.done`. Closing the
    generator (the client left) cancels every piece in flight, which closes their engine streams: they stop."""
    async with await manager.acquire(job.manifest, job.quant) as held:
        pieces = _Pieces(job, manager, media, client, side_by_side(held.model.parallel, held.model.spec.ctx))
        try:
            for piece, chunks in pieces.in_order():
                span = Span(piece.index, piece.start, piece.end)
                while (chunk := await chunks.get()) is not None:
                    if isinstance(chunk, BaseException):
                        raise chunk
                    for event in transcript.feed(span, chunk):
                        yield event
                note_audio(piece.end - piece.start)
        finally:
            await pieces.cancel()
    yield transcript.done()


class _Pieces:
    """Every piece's chat request started at once, at most `slots` of them running (the model's parallel
    slots: the engine batches them), each piece's chunks queued for the reader, who takes them in order.
    A piece's waiting request is behind any other client's in the engine's queue, so sharing stays fair."""

    def __init__(self, job: Job, manager: ModelManager, media: MediaPolicy, client: httpx.AsyncClient, slots: int):
        self._job, self._manager, self._media, self._client = job, manager, media, client
        self._gate = asyncio.Semaphore(slots)
        self._queues: list[asyncio.Queue[dict[str, Any] | BaseException | None]] = []
        self._tasks: list[asyncio.Task[None]] = []

    def in_order(self) -> Iterator[tuple[media_audio.Piece, asyncio.Queue[dict[str, Any] | BaseException | None]]]:
        for piece in self._job.recording.pieces:  # the gate admits them in this order (asyncio's is FIFO)
            self._queues.append(asyncio.Queue())
            self._tasks.append(asyncio.create_task(self._run(piece, self._queues[-1])))
        yield from zip(self._job.recording.pieces, self._queues)

    async def _run(self, piece: media_audio.Piece, out: asyncio.Queue[dict[str, Any] | BaseException | None]) -> None:
        job = self._job
        async with self._gate:
            try:
                request = piece_request(job.model, piece.wav, job.task, job.language, job.prompt, job.temperature)
                lease, body = await start_chat(request, self._manager, self._media, (job.manifest, job.quant))
                async with aclosing(await open_chunks(self._client, lease, "/v1/chat/completions", body)) as chunks:
                    async for chunk in chunks:
                        out.put_nowait(chunk)
            except Exception as exc:  # the reader raises it, in order
                out.put_nowait(exc)
        out.put_nowait(None)

    async def cancel(self) -> None:
        """Stop every piece. Waited for with asyncio.wait, not gather: a cancelled gather cancels its tasks
        again, and a second cancellation would cut short their closing of the engine streams."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)


async def whole_transcript(
    job: Job, manager: ModelManager, media: MediaPolicy, client: httpx.AsyncClient
) -> Transcript:
    """Every piece transcribed, for a non-streamed answer."""
    transcript = job.transcript()
    async with aclosing(transcript_events(job, transcript, manager, media, client)) as events:
        async for _ in events:
            pass
    return transcript
