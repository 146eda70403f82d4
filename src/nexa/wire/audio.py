"""OpenAI's speech-to-text wire shapes: /v1/audio/transcriptions and /v1/audio/translations.

Requests are multipart forms: a file part, `file`, and the text fields below. Then the answers, streamed or whole.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, WithJsonSchema

from nexa.wire.names import name_schema

ResponseFormat = Literal["json", "text", "verbose_json", "srt", "vtt"]
RESPONSE_FORMATS: tuple[str, ...] = ResponseFormat.__args__  # type: ignore[attr-defined]
FILE_SCHEMA = {"type": "string", "format": "binary",
               "description": "The recording: WAV, MP3, FLAC, OGG (Opus, Vorbis), M4A (AAC), WebM."}


class TranslationForm(BaseModel):
    """A /v1/audio/translations form, besides its file."""

    model: str = Field(description="An audio model's store name: org/repo or org/repo:QUANT.",
                       json_schema_extra=name_schema())
    prompt: str | None = Field(None, max_length=4000, description="Context: spellings, or the text before the clip.")
    # A form has no null: a field is sent as a number or left out.
    temperature: Annotated[float | None, Field(ge=0, le=2, description="Sampling temperature; 0 is greedy."),
                           WithJsonSchema({"type": "number", "minimum": 0, "maximum": 2})] = None
    response_format: ResponseFormat = Field("json", description="json, text, verbose_json (segments), srt or vtt.")
    stream: bool = Field(False, description="Stream transcript.text.delta events, then transcript.text.done.")


class TranscriptionForm(TranslationForm):
    """A /v1/audio/transcriptions form, besides its file."""

    language: str | None = Field(None, max_length=32, description="The speech's language (ISO-639-1, e.g. en).")


class TokenUsage(BaseModel):
    """What the engine counted, summed over the recording's pieces."""

    type: Literal["tokens"] = "tokens"
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0


class DurationUsage(BaseModel):
    type: Literal["duration"] = "duration"
    seconds: float


class Transcription(BaseModel):
    """`response_format: json` (the default)."""

    text: str
    usage: TokenUsage | None = None


class Segment(BaseModel):
    """One piece of the recording as the engine transcribed it. The engine gives no token ids, log
    probabilities or speech detection: `tokens` is empty, `avg_logprob` and `no_speech_prob` are 0."""

    id: int
    seek: int = Field(description="Where the piece starts, in 10 ms frames.")
    start: float
    end: float
    text: str
    tokens: list[int] = Field(default_factory=list)
    temperature: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float
    no_speech_prob: float = 0.0


class VerboseTranscription(BaseModel):
    """`response_format: verbose_json`."""

    task: Literal["transcribe", "translate"]
    language: str = Field(description="The language asked for ('english' for translations), or 'unknown': "
                          "the engine does not detect it.")
    duration: float
    text: str
    segments: list[Segment]
    usage: DurationUsage


class TextDelta(BaseModel):
    """A streamed piece of the transcript (`stream: true`)."""

    type: Literal["transcript.text.delta"] = "transcript.text.delta"
    delta: str


class TextDone(BaseModel):
    """The last streamed event: the whole transcript."""

    type: Literal["transcript.text.done"] = "transcript.text.done"
    text: str
    usage: TokenUsage | None = None
