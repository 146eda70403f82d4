"""POST /v1/audio/transcriptions and /v1/audio/translations: OpenAI's speech to text, as multipart forms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from nexa.compat.transcripts import Task
from nexa.compat.translator import Unchanged
from nexa.server.body import unless_client_leaves
from nexa.server.deps import get_client, get_manager
from nexa.server.forms import Upload, read_form
from nexa.server.speech import Job, audio_model, read_recording, transcript_events, whole_transcript
from nexa.server.stream import OPENAI, respond
from nexa.wire.audio import FILE_SCHEMA, Transcription, TranscriptionForm, TranslationForm, VerboseTranscription

router = APIRouter(tags=["audio"])
# Formats whose segments (subtitle cues) say when: one engine request per piece of under 30 s, so each
# segment has the piece's times (the engine gives none finer); the others share requests, which is faster.
TIMED = ("verbose_json", "srt", "vtt")
_ANSWERS: dict[int | str, dict[str, Any]] = {200: {
    "model": Transcription | VerboseTranscription,
    "description": "The transcript in `response_format` (text, srt and vtt as plain text), or server-sent events.",
}}


def _form_schema(fields: type[BaseModel]) -> dict[str, Any]:
    """The route's request body in /openapi.json: the file and the text fields. The form is read by
    nexa.server.forms, not by FastAPI's form parameters: a 20 s clip's request took 0.7 ms more of the
    router's CPU through those (and 2.6 ms more time)."""
    schema = fields.model_json_schema()
    schema["properties"] = {"file": FILE_SCHEMA, **schema["properties"]}
    schema["required"] = ["file", *schema.get("required", [])]
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


@router.post("/v1/audio/transcriptions", responses=_ANSWERS, response_model=None,
             openapi_extra=_form_schema(TranscriptionForm))
async def transcriptions(request: Request) -> Response:
    """Transcribe a recording with an audio model; long ones in pieces of under 30 s, streamed as they go."""
    form = await _Form.read(request, "/v1/audio/transcriptions", "transcribe", TranscriptionForm)
    return await _answer(request, form)


@router.post("/v1/audio/translations", responses=_ANSWERS, response_model=None,
             openapi_extra=_form_schema(TranslationForm))
async def translations(request: Request) -> Response:
    """Translate a recording's speech into English text; otherwise as /v1/audio/transcriptions."""
    form = await _Form.read(request, "/v1/audio/translations", "translate", TranslationForm)
    return await _answer(request, form)


@dataclass(frozen=True)
class _Form:
    """What the client sent, and to which route."""

    route: str
    task: Task
    file: Upload
    fields: TranslationForm

    @classmethod
    async def read(cls, request: Request, route: str, task: Task, schema: type[TranslationForm]) -> _Form:
        """The form, checked: a 400 naming each field that is missing or wrong (FastAPI's validation errors)."""
        form = await read_form(request)
        errors: list[Any] = []
        if "file" in form.fields:
            errors.append({"type": "value_error", "loc": ("body", "file"), "input": None,
                           "msg": "must be a file part (one with a filename), not a text field"})
        elif "file" not in form.files:
            errors.append({"type": "missing", "loc": ("body", "file"), "msg": "Field required", "input": None})
        try:
            fields = schema.model_validate(form.fields)
        except ValidationError as exc:
            errors += [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        if errors:
            raise RequestValidationError(errors)
        return cls(route, task, form.files["file"], fields)


async def _answer(request: Request, form: _Form) -> Response:
    # The manager and client are not declared as dependencies: FastAPI's solving of them cost 40 us a request (hot).
    manager, client = await get_manager(request), await get_client(request)
    fields = form.fields
    manifest, quant = await audio_model(manager, fields.model, form.route)
    recording = await read_recording(form.file.data, form.file.filename or "file", manager.settings.max_audio_seconds)
    timed = not fields.stream and fields.response_format in TIMED
    language = fields.language if isinstance(fields, TranscriptionForm) else None
    job = Job(manifest, quant, recording, form.task, language, fields.prompt, fields.temperature, timed,
              streamed=fields.stream)
    if fields.stream:
        return respond(transcript_events(job, job.transcript(), manager, client), Unchanged(), OPENAI, form.route)
    transcript = await unless_client_leaves(whole_transcript(job, manager, client))
    body, media_type = transcript.render(fields.response_format, recording.duration)
    return Response(body, media_type=media_type)
