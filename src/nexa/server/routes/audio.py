"""POST /v1/audio/transcriptions and /v1/audio/translations: OpenAI's speech to text, as multipart forms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import Response
from pydantic import WithJsonSchema
from starlette.formparsers import MultiPartParser

from nexa.compat.transcripts import Task
from nexa.compat.translator import Unchanged
from nexa.runtime import ModelManager
from nexa.server.body import unless_client_leaves
from nexa.server.deps import Manager, WorkerClient
from nexa.server.stream import OPENAI, respond
from nexa.server.speech import Job, audio_model, read_recording, transcript_events, whole_transcript
from nexa.wire.audio import ResponseFormat, Transcription, VerboseTranscription
from nexa.wire.names import name_schema

router = APIRouter(tags=["audio"])
# A recording is read into memory whole as soon as its form is parsed, so Starlette's spooling of a file over
# 1 MB to disk mostly costs: a thread hop for each 64 KiB written and another to read it back, 11 ms of the 13 ms
# its form took for a 120 s WAV. Files stay in memory up to 64 MiB (35 minutes of 16 kHz mono WAV, hours of
# MP3; twice the default --max-body); a raised limit's larger files still go to disk. (Starlette's class setting.)
MultiPartParser.spool_max_size = 64 * 1024 * 1024

AudioFile = Annotated[UploadFile, File(description="The recording: WAV, MP3, FLAC, OGG (Opus, Vorbis), M4A (AAC), WebM.")]
Model = Annotated[str, Form(description="An audio model's store name: org/repo or org/repo:QUANT.",
                           json_schema_extra=name_schema())]
Prompt = Annotated[str | None, Form(max_length=4000, description="Context: spellings, or the text before the clip.")]
# A form has no null: a field is sent as a number or left out.
Temperature = Annotated[float | None, Form(ge=0, le=2, description="Sampling temperature; 0 is greedy."),
                        WithJsonSchema({"type": "number", "minimum": 0, "maximum": 2})]
Format = Annotated[ResponseFormat, Form(description="json, text, verbose_json (segments), srt or vtt.")]
Stream = Annotated[bool, Form(description="Stream transcript.text.delta events, then transcript.text.done.")]
# Formats whose segments (subtitle cues) say when: one engine request per piece of under 30 s, so each
# segment has the piece's times (the engine gives none finer); the others share requests, which is faster.
TIMED = ("verbose_json", "srt", "vtt")
_ANSWERS: dict[int | str, dict[str, Any]] = {200: {
    "model": Transcription | VerboseTranscription,
    "description": "The transcript in `response_format` (text, srt and vtt as plain text), or server-sent events.",
}}


@router.post("/v1/audio/transcriptions", responses=_ANSWERS, response_model=None)
async def transcriptions(
    manager: Manager, client: WorkerClient, file: AudioFile, model: Model,
    language: Annotated[str | None, Form(max_length=32, description="The speech's language (ISO-639-1, e.g. en).")] = None,
    prompt: Prompt = None, temperature: Temperature = None, response_format: Format = "json", stream: Stream = False,
) -> Response:
    """Transcribe a recording with an audio model; long ones in pieces of under 30 s, streamed as they go."""
    form = _Form("/v1/audio/transcriptions", "transcribe", file, model, language, prompt, temperature, response_format, stream)
    return await _answer(form, manager, client)


@router.post("/v1/audio/translations", responses=_ANSWERS, response_model=None)
async def translations(
    manager: Manager, client: WorkerClient, file: AudioFile, model: Model,
    prompt: Prompt = None, temperature: Temperature = None, response_format: Format = "json", stream: Stream = False,
) -> Response:
    """Translate a recording's speech into English text; otherwise as /v1/audio/transcriptions."""
    form = _Form("/v1/audio/translations", "translate", file, model, None, prompt, temperature, response_format, stream)
    return await _answer(form, manager, client)


@dataclass(frozen=True)
class _Form:
    """What the client sent, and to which route."""

    route: str
    task: Task
    file: UploadFile
    model: str
    language: str | None
    prompt: str | None
    temperature: float | None
    response_format: str
    stream: bool


async def _answer(form: _Form, manager: ModelManager, client: httpx.AsyncClient) -> Response:
    manifest, quant = await audio_model(manager, form.model, form.route)
    try:  # the upload's copy in memory is dropped once read, not when the answer is done
        recording = await read_recording(form.file.file, form.file.filename or "file", manager.settings.max_audio_seconds)
    finally:
        await form.file.close()
    timed = not form.stream and form.response_format in TIMED
    job = Job(manifest, quant, recording, form.task, form.language, form.prompt, form.temperature, timed,
              streamed=form.stream)
    if form.stream:
        return respond(transcript_events(job, job.transcript(), manager, client), Unchanged(), OPENAI, form.route)
    transcript = await unless_client_leaves(whole_transcript(job, manager, client))
    body, media_type = transcript.render(form.response_format, recording.duration)
    return Response(body, media_type=media_type)
