"""Speech to text on the engine's own transcription route: check the model and the file, then transcribe
group by group.

A recording is decoded and cut (nexa.media.audio) in a thread before any model is leased, so a bad
file never loads a model. Consecutive pieces are then grouped, as many as a slot's share of the model's KV
cache holds (each request has a fixed cost in the engine, which a 30 s piece alone does not amortise), and
each group is one WAV streamed through the engine's `/v1/audio/transcriptions` (nexa.server.relay
`open_transcript`) under a lease of its own, as a chat client's request is, while one lease held for the
whole recording keeps the model loaded between them. Groups run side by side, as many as the model has
slots, so the engine batches them; the transcript still streams in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from nexa.media import audio as media_audio
from nexa.media.resolve import model_media
from nexa.compat.transcripts import Span, Task, Transcript, engine_form
from nexa.errors import InvalidRequest, WrongModelType
from nexa.runtime import ModelManager
from nexa.server.metrics import note_audio
from nexa.server.relay import open_transcript
from nexa.store import Manifest, ModelType


@dataclass(frozen=True)
class Recording:
    """A client's file, decoded and cut. A group of all its pieces (a clip under 30 s, as most are, or a
    longer one that one request holds) is sent as `wav`, where that costs no thread hop of its own: the file
    itself if it is a plain WAV already, else a WAV made with the decoding for a recording of one piece."""

    pieces: list[media_audio.Piece]
    duration: float
    wav: bytes | None = None

    async def wav_of(self, group: Sequence[media_audio.Piece]) -> bytes:
        """The group's audio as one WAV, which the engine's encoder cuts into 30 s windows as it does with a
        whole clip: each piece a file of its own cost the engine ~60 % more CPU on a 120 s clip."""
        if self.wav is not None and len(group) == len(self.pieces):
            return self.wav
        return await asyncio.to_thread(_wav, group)


async def audio_model(manager: ModelManager, name: str, route: str) -> tuple[Manifest, str]:
    """The resolved model, if it reads audio; else a 404 naming the kind of model the route needs."""
    manifest, quant = manager.resolve(name)
    generative = manifest.model_type in (ModelType.llm, ModelType.vlm)
    if generative and (await model_media(manifest, manager.store.model_dir(manifest.name))).audio:
        return manifest, quant
    what = "a text model without an audio projector" if generative else f"an {manifest.model_type.value}"
    raise WrongModelType(
        f"{route} needs an audio model (a vlm pulled with an audio projector, mmproj, e.g. "
        f"ggml-org/Voxtral-Mini-3B-2507-GGUF), but '{manifest.name}' is {what}",
        param="model", code="wrong_model_type",
    )


async def read_recording(data: bytes, filename: str, max_seconds: float) -> Recording:
    """The file decoded and cut; a 400 naming the file and what is wrong with it otherwise. A file of up to
    `QUICK_BYTES` that is a plain WAV already is done on the event loop (a header's parse and a view of its
    bytes); any other in a thread (FFmpeg decodes it, and cutting a long recording takes a while)."""
    if not data:
        raise InvalidRequest(f"the file '{filename}' is empty; send an audio file", param="file", code="invalid_audio")
    try:
        samples = media_audio.decode_plain(data, max_seconds) if len(data) <= QUICK_BYTES else None
        if samples is not None:
            return _recording(data, samples)
        return await asyncio.to_thread(lambda: _recording(data, media_audio.decode(data, max_seconds)))
    except media_audio.AudioProblem as exc:
        code = "audio_too_long" if isinstance(exc, media_audio.TooLong) else "invalid_audio"
        raise InvalidRequest(f"the file '{filename}' cannot be transcribed: {exc}", param="file", code=code) from None


# The largest file `read_recording` may decode on the event loop: 32 s of plain 16 kHz WAV, so most clips
# take no thread hop.
QUICK_BYTES = 1 << 20


def _recording(data: bytes, samples: np.ndarray) -> Recording:
    pieces = media_audio.cut(samples)
    whole = data if media_audio.as_sent(data, samples) else _wav(pieces) if len(pieces) == 1 else None
    return Recording(pieces, samples.size / media_audio.RATE, whole)


@dataclass(frozen=True)
class Job:
    """One transcription: the model, the recording and what the client asked."""

    manifest: Manifest
    quant: str
    recording: Recording
    task: Task
    language: str | None
    prompt: str | None
    temperature: float | None
    timed: bool = False  # the answer gives each segment's time (subtitles): a request per piece, a segment each
    streamed: bool = False  # the text goes out as it comes: the first group is one piece

    def transcript(self) -> Transcript:
        return Transcript(self.task, self.language, self.temperature)

    @property
    def form(self) -> dict[str, str]:
        return engine_form(self.task, self.language, self.prompt, self.temperature)


# The most pieces one engine request holds (8 minutes of audio): what one request's prompt may cost, and the
# text of a non-streamed group waits for, whatever a large cache would hold.
MOST_PIECES = 16
# A piece's share of the slots' one KV cache: a window's audio tokens (750-822 for Whisper-style encoders), the
# instruction and the text it gives. A request holds as many pieces as a slot's share of the cache has room for.
PIECE_TOKENS = 1024


@dataclass(frozen=True)
class Plan:
    """How a recording goes to the engine: pieces per request, and requests at once."""

    per_request: int
    side_by_side: int


def plan(slots: int, context: int, most: int = MOST_PIECES) -> Plan:
    """Each request as many pieces as a slot's share of the shared context holds (`most` at most), and one
    request per slot as far as the context holds them all: with every slot full, the cache is full, and not
    beyond (a chunk that finds no room fails in the engine: "failed to process mtmd chunk")."""
    per_request = max(1, min(most, context // slots // PIECE_TOKENS))
    return Plan(per_request, max(1, min(slots, context // (per_request * PIECE_TOKENS))))


def groups(pieces: Sequence[media_audio.Piece], per_request: int, first: int = 0) -> list[Sequence[media_audio.Piece]]:
    """Consecutive pieces, at most `per_request` a group, the groups as even as their count allows (5 pieces
    by 4 are 3 and 2, not 4 and 1: the last group does not finish long after the others). With `first`, the first
    group is that many pieces, so a streamed transcript's text starts after one piece's work, not a whole group's.
    A recording has at least one piece."""
    head, rest = pieces[:first], pieces[first:]
    if not rest:
        return [head]
    count = -(-len(rest) // per_request)
    size = -(-len(rest) // count)
    return ([head] if head else []) + [rest[at:at + size] for at in range(0, len(rest), size)]


async def transcript_events(
    job: Job, transcript: Transcript, manager: ModelManager, client: httpx.AsyncClient
) -> AsyncIterator[dict[str, Any]]:
    """OpenAI's stream events for the job, in order, ending with `transcript.text.done`. Closing the
    generator (the client left) cancels every group in flight, which closes their engine streams: they stop."""
    async with await manager.acquire(job.manifest, job.quant) as held:
        shape = plan(held.model.parallel, held.model.spec.ctx, 1 if job.timed else MOST_PIECES)
        runs = _Groups(job, manager, client, shape)
        try:
            for span, chunks in runs.in_order():
                async with aclosing(chunks):
                    async for chunk in chunks:
                        for event in transcript.feed(span, chunk):
                            yield event
                note_audio(span.end - span.start)
        finally:
            await runs.cancel()
    yield transcript.done()


def _wav(group: Sequence[media_audio.Piece]) -> bytes:
    return media_audio.wav(*(piece.samples for piece in group))


# A group's engine events as they come, then an error or None (the end), for the reader.
Chunks = asyncio.Queue[dict[str, Any] | BaseException | None]


class _Groups:
    """Every group's transcription request started at once, at most `side_by_side` of them running (the
    model's slots: the engine batches them), each group's events queued for the reader, who takes them in order.
    A group's waiting request is behind any other client's in the engine's queue, so sharing stays fair."""

    def __init__(self, job: Job, manager: ModelManager, client: httpx.AsyncClient, plan: Plan):
        self._job, self._manager, self._client = job, manager, client
        self._groups = groups(job.recording.pieces, plan.per_request, 1 if job.streamed else 0)
        self._gate = asyncio.Semaphore(plan.side_by_side)
        self._tasks: list[asyncio.Task[None]] = []

    def in_order(self) -> Iterator[tuple[Span, AsyncIterator[dict[str, Any]]]]:
        """Each group's span and its engine events. A lone group (most clips) is read as it comes, with no task
        and queue between (30 us of CPU a request, hot)."""
        spans = [Span(index, group[0].start, group[-1].end) for index, group in enumerate(self._groups)]
        if len(self._groups) == 1:
            yield spans[0], self._chunks(self._groups[0])
            return
        queues: list[Chunks] = []
        for group in self._groups:  # the gate admits them in this order (asyncio's is FIFO)
            queues.append(asyncio.Queue())
            self._tasks.append(asyncio.create_task(self._run(group, queues[-1])))
        for span, queue in zip(spans, queues):
            yield span, _queued(queue)

    async def _chunks(self, group: Sequence[media_audio.Piece]) -> AsyncIterator[dict[str, Any]]:
        job = self._job
        wav = await job.recording.wav_of(group)
        lease = await self._manager.acquire(job.manifest, job.quant)
        async with aclosing(await open_transcript(self._client, lease, wav, job.form)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def _run(self, group: Sequence[media_audio.Piece], out: Chunks) -> None:
        async with self._gate:
            try:
                async with aclosing(self._chunks(group)) as chunks:
                    async for chunk in chunks:
                        out.put_nowait(chunk)
            except Exception as exc:  # the reader raises it, in order
                out.put_nowait(exc)
        out.put_nowait(None)

    async def cancel(self) -> None:
        """Stop every group. Waited for with asyncio.wait, not gather: a cancelled gather cancels its tasks
        again, and a second cancellation would cut short their closing of the engine streams."""
        running = [task for task in self._tasks if not task.done()]
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running)


async def _queued(queue: Chunks) -> AsyncIterator[dict[str, Any]]:
    """A running group's events, then the error that ended it, if any."""
    while (chunk := await queue.get()) is not None:
        if isinstance(chunk, BaseException):
            raise chunk
        yield chunk


async def whole_transcript(job: Job, manager: ModelManager, client: httpx.AsyncClient) -> Transcript:
    """Every group transcribed, for a non-streamed answer."""
    transcript = job.transcript()
    async with aclosing(transcript_events(job, transcript, manager, client)) as events:
        async for _ in events:
            pass
    return transcript
