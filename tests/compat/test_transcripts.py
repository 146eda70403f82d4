"""Speech-to-text translation and audio cutting, without a server: the rules the end-to-end tests rely on."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nexa.media import audio as media_audio
from nexa.media.audio import FRAME, PIECE_SECONDS, RATE, AudioProblem, TooLong, cut, decode, sniff
from nexa.compat.transcripts import TRANSCRIBE, TRANSLATE, Span, Transcript, engine_form
from tests.fixtures.media_samples import encoded_audio, wav_bytes


def chunk(text: str | None = None, usage: dict | None = None) -> dict:
    """An event of the engine's transcription stream: a delta, or the group's end with its usage."""
    if text is not None:
        return {"type": "transcript.text.delta", "delta": text}
    return {"type": "transcript.text.done", "text": "", "usage": {"type": "tokens", **(usage or {})}}


def fed(pieces: list[list[str]], task: str = "transcribe") -> tuple[Transcript, list[str]]:
    transcript, deltas = Transcript(task), []
    for index, parts in enumerate(pieces):
        span = Span(index, index * 10.0, index * 10.0 + 10)
        for part in parts:
            deltas += [e["delta"] for e in transcript.feed(span, chunk(part))]
        transcript.feed(span, chunk(usage={"input_tokens": 800, "output_tokens": len(parts)}))
    return transcript, deltas


def test_pieces_join_with_one_space_in_the_stream_and_the_whole():
    transcript, deltas = fed([[" Hello", " there.", "\n"], ["", "  General", " Kenobi."], ["   "]])
    assert "".join(deltas).rstrip() == transcript.text == "Hello there. General Kenobi."
    assert [s.text for s in transcript.segments] == ["Hello there.", "General Kenobi.", ""]
    done = transcript.done()
    assert done["type"] == "transcript.text.done" and done["usage"]["input_tokens"] == 2400
    assert done["usage"]["total_tokens"] == 2400 + 7


def test_subtitles_skip_empty_pieces_and_count_hours():
    transcript = Transcript("transcribe")
    transcript.feed(Span(0, 3599.5, 3629.25), chunk("Late."))
    transcript.feed(Span(1, 3629.25, 3650.0), chunk(" "))
    srt, media_type = transcript.render("srt", 3650.0)
    assert srt == "1\n00:59:59,500 --> 01:00:29,250\nLate.\n" and media_type.startswith("application/x-subrip")
    assert transcript.render("vtt", 3650.0)[0] == "WEBVTT\n\n00:59:59.500 --> 01:00:29.250\nLate.\n"


def test_verbose_json_of_a_translation_says_english():
    transcript, _ = fed([["Bonjour."]], task="translate")
    body = json.loads(transcript.render("verbose_json", 10.0)[0])
    assert (body["task"], body["language"], body["duration"], body["usage"]) == \
        ("translate", "english", 10.0, {"type": "duration", "seconds": 10.0})
    assert body["segments"][0]["compression_ratio"] > 0


def test_the_instruction_keeps_the_engines_words_and_adds_the_clients_hints():
    def text_of(**fields) -> str:
        return engine_form(**{"language": None, "prompt": None, "temperature": None, **fields})["prompt"]

    assert text_of(task="transcribe") == TRANSCRIBE
    assert text_of(task="transcribe", language="fr", prompt="Ada") == f"{TRANSCRIBE} (language: fr). Context and spellings to follow: Ada"
    assert text_of(task="translate", language="fr") == TRANSLATE


def test_the_engine_form_streams_and_names_a_temperature_only_when_given():
    assert engine_form("transcribe", None, None, None) == {"prompt": TRANSCRIBE, "stream": "true"}
    assert engine_form("transcribe", None, None, 0.2)["temperature"] == "0.2"
    assert "language" not in engine_form("transcribe", "fr", None, None)  # in the instruction, not said twice


def test_formats_are_told_by_their_bytes():
    assert sniff(wav_bytes(0.1)) == "WAV"
    assert sniff(encoded_audio("ogg", "libopus", 0.2)) == "OGG"
    assert sniff(encoded_audio("ipod", "aac", 0.2)) == "M4A"
    with pytest.raises(AudioProblem, match="it is text"):
        sniff(b"just words")


def test_a_wav_already_in_the_engines_form_is_read_as_it_is():
    rng = np.random.default_rng(1)
    samples = (rng.standard_normal(2 * RATE) * 3000).astype(np.int16)
    data = media_audio.wav(samples)
    assert np.array_equal(decode(data, 60), samples)
    assert np.array_equal(media_audio._ffmpeg(data, "WAV", 60), samples)  # what FFmpeg makes of it
    assert decode(wav_bytes(1.0, rate=8000), 60).size == RATE  # any other WAV is resampled by FFmpeg
    assert media_audio.as_sent(data, decode(data, 60))  # no copy: the file goes to the engine as it came


def test_a_cut_off_wav_is_read_as_far_as_it_goes_and_not_sent_as_it_came():
    samples = np.arange(RATE, dtype=np.int16)
    data = media_audio.wav(samples)[:-RATE]  # its header still counts a second of samples
    read = decode(data, 60)
    assert np.array_equal(read, samples[:RATE // 2])
    assert not media_audio.as_sent(data, read)
    assert not media_audio.as_sent(data, decode(wav_bytes(1.0, rate=8000), 60))


def test_decoding_stops_at_the_duration_cap():
    with pytest.raises(TooLong, match="over this server's limit of 5 s"):
        decode(wav_bytes(8.0), max_seconds=5)
    assert decode(wav_bytes(4.0), max_seconds=5).size == 4 * RATE


def test_a_cut_falls_in_the_quietest_moment_near_the_window_end():
    rng = np.random.default_rng(0)
    samples = (rng.standard_normal(70 * RATE) * 3000).astype(np.int16)
    gap = int(27.0 * RATE)
    samples[gap:gap + 4 * FRAME] = 0  # 200 ms of silence 2.75 s before the longest piece ends
    pieces = cut(samples)
    assert pieces[0].end == pytest.approx((gap + 4 * FRAME) / RATE)
    assert all(p.end - p.start <= PIECE_SECONDS for p in pieces)
    assert pieces[-1].end == 70.0 and all(a.end == b.start for a, b in zip(pieces, pieces[1:]))
    assert pieces[0].samples.size == gap + 4 * FRAME
    assert np.array_equal(np.concatenate([p.samples for p in pieces]), samples)  # views of the whole, in order


def test_silence_is_cut_at_the_longest_piece():
    assert [p.end for p in cut(np.zeros(int(65 * RATE), np.int16))] == [PIECE_SECONDS, 2 * PIECE_SECONDS, 65.0]
    assert media_audio.WINDOW_SECONDS - PIECE_SECONDS > 0  # a whole window would cost the engine two
