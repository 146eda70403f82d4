"""Audio files for transcription: what format a file is, its samples, and the pieces the engine reads.

The engine's audio encoders read at most one window of audio per pass (mtmd cuts its mel spectrogram into
3,000-frame windows of 10 ms: 30 s) and every window costs its own prompt tokens (750 for a Whisper-style
qwen2a projector), so a long recording does not fit one prompt. It is decoded here to 16 kHz mono (by PyAV,
unless it is a WAV in that form already), cut into pieces shorter than one window, each cut placed at the
quietest moment near the window's end so that words are rarely split; consecutive pieces may share one
request (nexa.server.speech), sent as one small WAV file.

Decoding grows with the file: call `decode` and `cut` off the event loop.
"""

from __future__ import annotations

import io
import struct
import wave
from dataclasses import dataclass

import numpy as np

RATE = 16_000  # what every mtmd audio encoder resamples to
WINDOW_SECONDS = 30.0  # one encoder window; the projector's GGUF does not say it, mtmd's preprocessors do
# Just under a window: exactly 30 s makes the engine encode a second, padded window (twice the tokens).
PIECE_SECONDS = WINDOW_SECONDS - 0.25
SEARCH_SECONDS = 5.0  # how far back from a piece's longest end the quietest moment is looked for
FRAME = RATE // 20  # 50 ms: the unit of that search

# Format → the demuxer PyAV opens it with (the file's own bytes decide the format, never its name).
DEMUXERS = {"WAV": "wav", "MP3": "mp3", "FLAC": "flac", "OGG": "ogg", "M4A": "mp4", "WebM": "matroska"}
READABLE = "WAV, MP3, FLAC, OGG (Opus or Vorbis), M4A (AAC) or WebM"


class AudioProblem(Exception):
    """The file cannot be transcribed; the route turns it into a 400 naming the file."""


class TooLong(AudioProblem):
    """The audio is longer than the server's duration cap."""


@dataclass(frozen=True, eq=False)
class Piece:
    """One part of a recording: where it lies in the whole (seconds) and its samples (a view, not a copy)."""

    index: int
    start: float
    end: float
    samples: np.ndarray


def sniff(data: bytes) -> str:
    """The container format, from the file's first bytes; AudioProblem naming what it is otherwise."""
    head = data[:16]
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "WAV"
    if head[:4] == b"fLaC":
        return "FLAC"
    if head[:4] == b"OggS":
        return "OGG"
    if head[4:8] == b"ftyp":
        return "M4A"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "WebM"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "MP3"
    raise AudioProblem(f"it is {_what(data)}, not audio in a format nexa reads ({READABLE})")


def _what(data: bytes) -> str:
    """A name for a file that is no audio nexa reads, for the error message."""
    head = data[:16]
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "AIFF audio"
    if head[:4] == b"RIFF":
        return f"a RIFF {head[8:12].decode('latin-1')!r} file"
    try:
        data[:512].decode("utf-8")
    except UnicodeDecodeError:
        return "in an unknown format"
    return "text"


def decode(data: bytes, max_seconds: float) -> np.ndarray:
    """The audio's samples: 16 kHz, mono, int16. Stops as soon as the audio runs past `max_seconds`
    (TooLong), so a long or forged file costs no more than the cap allows."""
    samples = decode_plain(data, max_seconds)
    if samples is not None:
        return samples
    fmt = sniff(data)
    return _checked(_ffmpeg(data, fmt, max_seconds), fmt, max_seconds)


def decode_plain(data: bytes, max_seconds: float) -> np.ndarray | None:
    """`decode`'s answer where it needs no FFmpeg (a 16 kHz mono 16-bit WAV): the parse of a header and a view
    of the bytes, work that does not grow with the file. None for any other file."""
    samples = _plain_wav(data) if sniff(data) == "WAV" else None
    return None if samples is None else _checked(samples, "WAV", max_seconds)


def _checked(samples: np.ndarray, fmt: str, max_seconds: float) -> np.ndarray:
    if samples.size == 0:
        raise AudioProblem(f"the {fmt} file holds no audio samples")
    if samples.size > int(max_seconds * RATE):
        raise _too_long(samples.size / RATE, max_seconds)
    return samples


def _plain_wav(data: bytes) -> np.ndarray | None:
    """The samples of a WAV file that is already 16 kHz mono 16-bit PCM, as a view of the file's own bytes
    (no copy); None for any other WAV. Such files are common, and FFmpeg's decode and resample of them costs
    about 1 ms an audio second, on the CPU cores the engine needs."""
    stream = io.BytesIO(data)
    try:
        with wave.open(stream) as file:
            if (file.getnchannels(), file.getsampwidth(), file.getframerate(), file.getcomptype()) != (1, 2, RATE, "NONE"):
                return None
            frames, start = file.getnframes(), stream.tell()  # wave stops at the start of the samples
    except (wave.Error, EOFError):
        return None  # FFmpeg reads more of WAV's variants, and words what is wrong with the rest
    count = min(frames, (len(data) - start) // 2)
    if count <= 0:
        return None  # a recorder's header may count 0 frames: FFmpeg reads on
    samples = np.frombuffer(data, "<i2", count, start)
    # A file cut off, or whose header counts more than it holds (a recorder's placeholder), is not sent as it is.
    return samples if count == frames else samples.copy()


def as_sent(data: bytes, samples: np.ndarray) -> bool:
    """Whether `samples` are the file's own bytes (a plain WAV): the file is then the engine's WAV of them,
    to be sent as it came, with no copy made."""
    return samples.base is data


def _ffmpeg(data: bytes, fmt: str, max_seconds: float) -> np.ndarray:
    """Any file PyAV reads, decoded and resampled; stops as soon as it runs past the cap."""
    import av  # on use: FFmpeg's libraries take a second to load, which every server start would pay

    limit = int(max_seconds * RATE)
    try:
        with av.open(io.BytesIO(data), format=DEMUXERS[fmt]) as container:
            if not container.streams.audio:
                raise AudioProblem(f"the {fmt} file holds no audio stream")
            if container.duration is not None and container.duration / av.time_base > max_seconds + 1:
                raise _too_long(container.duration / av.time_base, max_seconds)
            resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
            parts: list[np.ndarray] = []
            count = 0
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    parts.append(out.to_ndarray().reshape(-1))
                    count += parts[-1].size
                if count > limit:
                    raise _too_long(count / RATE, max_seconds)
            parts.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    except (av.FFmpegError, ValueError, IndexError) as exc:  # PyAV raises the latter two on some broken headers
        raise AudioProblem(f"it cannot be decoded as {fmt} ({exc})") from None
    return np.concatenate(parts) if parts else np.zeros(0, np.int16)


def _too_long(seconds: float, max_seconds: float) -> TooLong:
    return TooLong(
        f"it is {seconds:.0f} s of audio, over this server's limit of {max_seconds:g} s; send a shorter clip, "
        "or start nexa serve with a larger --max-audio-seconds"
    )


def cut(samples: np.ndarray) -> list[Piece]:
    """The recording in pieces of at most PIECE_SECONDS, each ending at the quietest 50 ms of its last
    SEARCH_SECONDS (the latest such moment, so silence gives pieces of full length)."""
    longest, search = int(PIECE_SECONDS * RATE), int(SEARCH_SECONDS * RATE)
    pieces: list[Piece] = []
    start = 0
    while start < samples.size:
        end = samples.size
        if end - start > longest:
            end = start + longest - search + _quiet_end(samples[start + longest - search:start + longest])
        pieces.append(Piece(len(pieces), start / RATE, end / RATE, samples[start:end]))
        start = end
    return pieces


def _quiet_end(span: np.ndarray) -> int:
    """The offset in `span` just after its quietest 50 ms frame (the last one among equals)."""
    frames = span[: span.size // FRAME * FRAME].astype(np.float32).reshape(-1, FRAME)
    energy = np.square(frames).mean(axis=1)
    quietest = energy.size - 1 - int(np.argmin(energy[::-1]))
    return (quietest + 1) * FRAME


def wav(*parts: np.ndarray) -> bytes:
    """16 kHz mono 16-bit WAV of the parts in order (the form every engine build decodes): the header and
    the samples, copied once, not once per step as the `wave` module and a concatenation would."""
    data = [np.ascontiguousarray(part, dtype="<i2") for part in parts]
    size = sum(part.nbytes for part in data)
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + size, b"WAVE", b"fmt ", 16, 1, 1, RATE, 2 * RATE, 2, 16,
                         b"data", size)
    return b"".join([header, *data])
