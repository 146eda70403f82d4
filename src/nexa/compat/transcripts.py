"""OpenAI speech-to-text, for a recording sent to the engine in pieces.

A group of consecutive pieces of the recording goes to the engine's own transcription route (llama.cpp's
`/v1/audio/transcriptions`, one WAV in a multipart form), with nexa's instruction as its prompt: the words
that route would use ("Transcribe audio to text", plus "(language: xx)" when asked) or a translation's, and
a client's context after them. The engine's route turns it into a chat request to the same model, as a
chat client's audio would be, but reads the audio as bytes: the chat route's base64 inside a JSON body
cost the engine a fifth of its speed on a 120 s clip (bench/transcribe.py).
Here the groups' streamed engine events become one OpenAI answer: a stream of `transcript.text.delta`
events closed by `transcript.text.done`, or the whole transcript in each `response_format`, one segment
(and one subtitle cue) per group: the engine says nothing of when in its audio a word was heard.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Literal

from nexa.wire.audio import (
    DurationUsage,
    Segment,
    TextDelta,
    TextDone,
    TokenUsage,
    Transcription,
    VerboseTranscription,
)

Task = Literal["transcribe", "translate"]
TRANSCRIBE = "Transcribe audio to text"  # the instruction of llama.cpp's transcription route
TRANSLATE = "Translate the speech in this audio into English text"


def engine_form(task: Task, language: str | None, prompt: str | None, temperature: float | None) -> dict[str, str]:
    """The form fields of a group's request to the engine's transcription route, beside its WAV. A client's
    `prompt` is context (spellings, the text before), not an instruction, so it follows the instruction
    rather than replacing it; the language goes into the instruction, where the engine would put it."""
    instruction = TRANSLATE if task == "translate" else TRANSCRIBE
    if language and task == "transcribe":
        instruction += f" (language: {language})"
    if prompt:
        instruction += f". Context and spellings to follow: {prompt}"
    form = {"prompt": instruction, "stream": "true"}
    if temperature is not None:
        form["temperature"] = repr(temperature)
    return form


@dataclass(frozen=True)
class Span:
    """Where a group of pieces lies in the recording, in seconds."""

    index: int
    start: float
    end: float


@dataclass
class Transcript:
    """The groups' engine events, in order, as OpenAI's stream events and whole answers. `feed` returns
    the events to stream now; after the last group, `done` or `render` give the whole."""

    task: Task
    language: str | None = None
    temperature: float | None = None
    usage: TokenUsage = field(default_factory=TokenUsage)
    _spans: list[Span] = field(default_factory=list)
    _texts: list[list[str]] = field(default_factory=list)
    _said: bool = False  # anything streamed yet
    _group_said: bool = False
    _held: str = ""  # whitespace streamed only once more text follows

    def feed(self, span: Span, event: dict[str, Any]) -> list[dict[str, Any]]:
        """The events to stream for one of the engine's: a group's `transcript.text.delta`, or its
        `transcript.text.done`, which brings the group's token usage."""
        if not self._spans or self._spans[-1].index != span.index:
            self._spans.append(span)
            self._texts.append([])
            self._group_said = False
        if usage := event.get("usage"):
            self.usage.input_tokens += int(usage.get("input_tokens") or 0)
            self.usage.output_tokens += int(usage.get("output_tokens") or 0)
            self.usage.total_tokens = self.usage.input_tokens + self.usage.output_tokens
        if event.get("type") != "transcript.text.delta":
            return []
        delta = str(event.get("delta") or "")
        self._texts[-1].append(delta)
        if not self._group_said:  # groups are joined by one space, whatever the model starts with
            delta = delta.lstrip()
            if not delta:
                return []
            self._held = " " if self._said else ""
            self._group_said = self._said = True
        # Whitespace is held back until more text follows: a group's last spaces are not the transcript's.
        text = self._held + delta
        shown = text.rstrip()
        self._held = text[len(shown):]
        return [TextDelta(delta=shown).model_dump()] if shown else []

    @property
    def segments(self) -> list[Segment]:
        segments = []
        for span, parts in zip(self._spans, self._texts):
            text = "".join(parts).strip()
            segments.append(Segment(
                id=span.index, seek=round(span.start * 100), start=round(span.start, 3), end=round(span.end, 3),
                text=text, temperature=self.temperature or 0.0, compression_ratio=_compression_ratio(text),
            ))
        return segments

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments if s.text)

    def done(self) -> dict[str, Any]:
        return TextDone(text=self.text, usage=self.usage).model_dump()

    def render(self, response_format: str, duration: float) -> tuple[str, str]:
        """(body, media type) of the whole answer in `response_format`."""
        if response_format == "text":
            return self.text + "\n", "text/plain; charset=utf-8"
        if response_format == "srt":
            return _subtitles(self.segments, ",", first=""), "application/x-subrip; charset=utf-8"
        if response_format == "vtt":
            return _subtitles(self.segments, ".", first="WEBVTT\n\n", numbered=False), "text/vtt; charset=utf-8"
        if response_format == "verbose_json":
            answer: Any = VerboseTranscription(
                task=self.task, duration=round(duration, 3), text=self.text, segments=self.segments,
                language="english" if self.task == "translate" else (self.language or "unknown"),
                usage=DurationUsage(seconds=round(duration, 3)),
            )
        else:
            answer = Transcription(text=self.text, usage=self.usage)
        return answer.model_dump_json(), "application/json"


def _compression_ratio(text: str) -> float:
    """Whisper's repetition signal: text bytes over their zlib size (a looping model compresses well)."""
    data = text.encode()
    return round(len(data) / len(zlib.compress(data)), 3) if data else 0.0


def _timestamp(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    return f"{hours:02d}:{minutes:02d}:{millis // 1000:02d}{separator}{millis % 1000:03d}"


def _subtitles(segments: list[Segment], separator: str, first: str, numbered: bool = True) -> str:
    """SRT or WebVTT: one cue per segment that holds text."""
    cues = []
    for number, segment in enumerate((s for s in segments if s.text), start=1):
        timing = f"{_timestamp(segment.start, separator)} --> {_timestamp(segment.end, separator)}"
        cues.append((f"{number}\n" if numbered else "") + f"{timing}\n{segment.text}\n")
    return first + "\n".join(cues)
