"""Speech to text end to end: the openai SDK against nexa serve, a scripted text model with the qwen2a
audio projector answering a fixed transcript, every response format, streamed, and every refusal."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nexa.media.audio import PIECE_SECONDS
from nexa.store import Store
from tests.conftest import TINY, ServerProcess, import_tiny, metric
from tests.fixtures.media_samples import encoded_audio, mp3_bytes, wav_bytes
from tests.fixtures.tiny_models import make_chat_llm, make_mmproj
from tests.server.test_hostile import busy, wait_for

AUDIO, TEXT, EMBEDDER = "test/audio-qwen2a", "test/qwen3-text", "test/bert-embed"
SCRIPT = "Hello from a scripted model."


def transcribe(http: httpx.Client, data: bytes | None, name: str = "talk.wav", route: str = "transcriptions",
               **fields: str) -> httpx.Response:
    files = {"file": (name, data)} if data is not None else None
    return http.post(f"/v1/audio/{route}", files=files, data={"model": AUDIO, **fields})


def refusal(response: httpx.Response, status: int = 400) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]


# ---------------------------------------------------------------- answers, through the openai SDK


def test_json_is_the_default_with_token_usage(client):
    answer = client.audio.transcriptions.create(model=AUDIO, file=("talk.wav", wav_bytes(1.0)))
    assert answer.text == SCRIPT
    assert answer.usage.type == "tokens" and answer.usage.input_tokens > 750 and answer.usage.output_tokens > 0


def test_text_is_the_transcript_alone(client):
    assert client.audio.transcriptions.create(model=AUDIO, file=("t.wav", wav_bytes(1.0)), response_format="text") \
        == SCRIPT + "\n"


# The session server gives the audio model 2 slots sharing 4,096 tokens: a request holds 2 pieces (~800 tokens
# each), so 70 s, 3 pieces, is 2 requests. The scripted model says its script once per request it answers.
GROUPED = 70.0


def test_pieces_share_a_request_as_far_as_a_slots_share_of_the_cache_holds_them(client):
    answer = client.audio.transcriptions.create(model=AUDIO, file=("talk.wav", wav_bytes(GROUPED)))
    assert answer.text == f"{SCRIPT} {SCRIPT}"  # 2 engine requests for 3 pieces
    assert answer.usage.input_tokens > 3 * 750  # every piece was heard: ~750 audio tokens each
    assert client.audio.transcriptions.create(model=AUDIO, file=("t.wav", wav_bytes(GROUPED)), response_format="text") \
        == f"{SCRIPT} {SCRIPT}\n"


def test_verbose_json_has_one_segment_per_piece(client):
    # Segments say when: a request per piece, whose times the segment keeps.
    answer = client.audio.transcriptions.create(
        model=AUDIO, file=("talk.wav", wav_bytes(GROUPED)), response_format="verbose_json", language="en",
    )
    assert (answer.text, answer.duration, answer.language) == (" ".join([SCRIPT] * 3), GROUPED, "en")
    assert [(s.id, s.start, s.end, s.text) for s in answer.segments] == [
        (0, 0.0, PIECE_SECONDS, SCRIPT), (1, PIECE_SECONDS, 2 * PIECE_SECONDS, SCRIPT), (2, 2 * PIECE_SECONDS, GROUPED, SCRIPT)
    ]
    assert answer.segments[1].seek == round(PIECE_SECONDS * 100)


@pytest.mark.parametrize("fmt, expected", [
    ("srt", f"1\n00:00:00,000 --> 00:00:29,750\n{SCRIPT}\n\n2\n00:00:29,750 --> 00:00:40,000\n{SCRIPT}\n"),
    ("vtt", f"WEBVTT\n\n00:00:00.000 --> 00:00:29.750\n{SCRIPT}\n\n00:00:29.750 --> 00:00:40.000\n{SCRIPT}\n"),
])
def test_subtitles_have_one_cue_per_piece(client, fmt, expected):
    assert client.audio.transcriptions.create(model=AUDIO, file=("t.wav", wav_bytes(40.0)), response_format=fmt) \
        == expected


def test_a_stream_is_deltas_then_the_whole_text(client):
    events = list(client.audio.transcriptions.create(model=AUDIO, file=("t.wav", wav_bytes(GROUPED)), stream=True))
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    assert [e.type for e in events[len(deltas):]] == ["transcript.text.done"]
    assert "".join(deltas) == events[-1].text == f"{SCRIPT} {SCRIPT}"  # grouped as json is
    assert len(deltas) > 2 and events[-1].usage.input_tokens > 3 * 750


def test_translations_answer_in_english(client):
    answer = client.audio.translations.create(model=AUDIO, file=("t.wav", wav_bytes(1.0)), response_format="verbose_json")
    assert (answer.text, answer.language, answer.model_extra.get("task")) == (SCRIPT, "english", "translate")
    assert client.audio.translations.create(model=AUDIO, file=("t.wav", wav_bytes(1.0)), response_format="text") \
        == SCRIPT + "\n"


@pytest.mark.parametrize("name, data", [
    ("talk.mp3", mp3_bytes(60)),
    ("talk.ogg", encoded_audio("ogg", "libopus")),
    ("talk.m4a", encoded_audio("ipod", "aac")),
    ("talk.flac", encoded_audio("flac", "flac")),
    ("talk.webm", encoded_audio("webm", "libopus")),
    ("misnamed.wav", encoded_audio("ogg", "libopus")),  # the bytes decide, not the name
    ("ffmpeg.wav", encoded_audio("wav", "pcm_s16le", rate=16000)),  # the engine's form, with a LIST chunk: sent as it came
])
def test_every_format_is_decoded(client, name, data):
    assert client.audio.transcriptions.create(model=AUDIO, file=(name, data), prompt="Ada, Linus").text == SCRIPT


def test_a_ten_minute_clip_is_transcribed_piece_by_piece(client, http):
    before = metric(http, "nexa_audio_seconds_total")
    answer = client.audio.transcriptions.create(model=AUDIO, file=("long.wav", wav_bytes(600)),
                                                response_format="verbose_json")
    pieces = math.ceil(600 / PIECE_SECONDS)  # silence has no quieter moment: every cut at the longest piece
    assert pieces == 21 and len(answer.segments) == pieces
    assert answer.text == " ".join([SCRIPT] * pieces)
    assert all(a.end == b.start for a, b in zip(answer.segments, answer.segments[1:]))
    assert answer.segments[-1].end == answer.duration == 600.0
    # The metrics middleware records a request once its answer is sent: the count may land just after.
    deadline = time.monotonic() + 10
    while metric(http, "nexa_audio_seconds_total") - before < 599.99 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metric(http, "nexa_audio_seconds_total") - before == pytest.approx(600.0, abs=0.01)
    assert metric(http, "nexa_requests_total", route="/v1/audio/transcriptions", status="200") >= 1
    # Without segments to time, two pieces a request: 11 requests.
    grouped = client.audio.transcriptions.create(model=AUDIO, file=("long.wav", wav_bytes(600)))
    assert grouped.text == " ".join([SCRIPT] * math.ceil(pieces / 2)) and grouped.usage.input_tokens > pieces * 750


def test_the_model_card_lists_transcription(http):
    assert "transcription" in http.get(f"/v1/models/{AUDIO}").json()["capabilities"]
    assert "transcription" not in http.get(f"/v1/models/{TEXT}").json()["capabilities"]


# ---------------------------------------------------------------- refusals, over plain HTTP


def test_a_request_without_a_file_is_400(http):
    assert refusal(transcribe(http, None))["param"] == "file"


def test_an_empty_file_is_400(http):
    assert "is empty" in refusal(transcribe(http, b""))["message"]


@pytest.mark.parametrize("name, data, says", [
    ("notes.wav", b"These are my meeting notes, not a recording.\n", "it is text, not audio"),
    ("sound.aiff", b"FORM\x00\x00\x10\x00AIFFCOMM" + bytes(64), "it is AIFF audio, not audio in a format nexa reads"),
    ("blob.bin", bytes(range(256)) * 4, "in an unknown format"),
    ("broken.flac", b"fLaC" + bytes(200), "cannot be decoded as FLAC"),
])
def test_what_is_not_audio_is_400_naming_it(http, name, data, says):
    error = refusal(transcribe(http, data, name))
    assert error["code"] == "invalid_audio" and error["param"] == "file"
    assert f"'{name}'" in error["message"] and says in error["message"]


@pytest.mark.parametrize("model, says", [
    (TEXT, f"but '{TEXT}' is a text model without an audio projector"),
    (EMBEDDER, f"but '{EMBEDDER}' is an embedder"),
])
def test_a_model_that_cannot_hear_is_404_naming_the_type_it_needs(http, model, says):
    for route in ("transcriptions", "translations"):
        response = http.post(f"/v1/audio/{route}", files={"file": ("t.wav", wav_bytes(1.0))}, data={"model": model})
        error = refusal(response, 404)
        assert error["code"] == "wrong_model_type" and "needs an audio model" in error["message"]
        assert says in error["message"]


def test_unknown_models_and_formats_are_refused(http):
    assert refusal(http.post("/v1/audio/transcriptions", files={"file": ("t.wav", wav_bytes(1.0))},
                             data={"model": "nobody/nothing"}), 404)["code"] == "model_not_found"
    assert refusal(transcribe(http, wav_bytes(1.0), response_format="docx"))["param"] == "response_format"


def multipart(*parts: tuple[bytes, bytes], end: bytes = b"--B--\r\n") -> bytes:
    """A form by hand (boundary B), each part a Content-Disposition and a value: what clients get wrong."""
    return b"".join(b"--B\r\nContent-Disposition: form-data; " + head + b"\r\n\r\n" + value + b"\r\n"
                    for head, value in parts) + end


@pytest.mark.parametrize("body, says", [
    (multipart((b'name="model"', AUDIO.encode()), (b'name="file"; filename="t.wav"', wav_bytes(1.0)), end=b""),
     "the form ends before its closing boundary"),
    (multipart(*[(b'name="f%d"' % i, b"x") for i in range(65)]), "the form has more than 64 parts"),
    (multipart((b'name="prompt"', b"x" * 70_000)), "the field 'prompt' is over 65536 bytes"),
    (multipart((b'filename="t.wav"', b"RIFF")), "a part of the form has no name"),
    (multipart((b'name="model"', b"\xff\xfe")), "the field 'model' is not UTF-8 text"),
])
def test_a_broken_form_is_400_saying_what_is_wrong(http, body, says):
    response = http.post("/v1/audio/transcriptions", content=body,
                         headers={"Content-Type": "multipart/form-data; boundary=B"})
    error = refusal(response)
    assert error["code"] == "invalid_form" and error["message"].startswith(says), error
    assert "multipart/form-data" in error["message"]


def test_a_file_sent_as_text_is_400_naming_it(http):
    body = multipart((b'name="model"', AUDIO.encode()), (b'name="file"', b"talk.wav"))
    response = http.post("/v1/audio/transcriptions", content=body,
                         headers={"Content-Type": "multipart/form-data; boundary=B"})
    error = refusal(response)
    assert error["param"] == "file" and "must be a file part" in error["message"]


# ---------------------------------------------------------------- limits and leaving: a server of its own


LOOP = "test/audio-loop"
CAP_SECONDS = 45
MAX_BODY = 2_000_000


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> Iterator[ServerProcess]:
    store = Store(tmp_path_factory.mktemp("speech"))
    import_tiny(store, tiny_dir, AUDIO, *TINY[AUDIO])
    files = tmp_path_factory.mktemp("speech-files")
    make_chat_llm(str(files / "loop.gguf"), script=["Tick", " tock"], loop=True, n_ctx=32768)
    make_mmproj(str(files / "mmproj-qwen2a.gguf"), n_embd_text=128, kind="qwen2a")
    import_tiny(store, files, LOOP, ["loop.gguf", "mmproj-qwen2a.gguf"], None)
    process = ServerProcess(store.root, "--max-body", str(MAX_BODY), "--max-audio-seconds", str(CAP_SECONDS),
                            "--model-option", f"{LOOP}:ctx=32768,parallel=1")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def capped_http(capped: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=capped.base_url, timeout=60) as client:
        yield client


def test_a_file_over_the_size_cap_is_413(capped_http):
    data = wav_bytes(MAX_BODY / 32_000 + 1)  # 16-bit mono at 16 kHz: 32 kB a second
    assert refusal(transcribe(capped_http, data), 413)["message"].startswith("the request body is larger than")


def test_a_clip_over_the_duration_cap_is_400_and_loads_nothing(capped_http):
    error = refusal(transcribe(capped_http, wav_bytes(CAP_SECONDS + 5, rate=8000)))
    assert error["code"] == "audio_too_long" and f"limit of {CAP_SECONDS} s" in error["message"]
    assert capped_http.get("/v1/ps").json()["data"] == []
    answer = transcribe(capped_http, wav_bytes(CAP_SECONDS - 1, rate=8000)).json()
    assert answer["text"] == SCRIPT and answer["usage"]["input_tokens"] > 2 * 750  # 2 pieces, one request


@pytest.mark.parametrize("clip", [wav_bytes(1.0), wav_bytes(CAP_SECONDS - 1, rate=8000)], ids=["one-piece", "grouped"])
def test_a_client_that_leaves_mid_stream_frees_the_slot(capped_http, clip):
    # The grouped clip's two pieces are one request: its text streams while the engine still generates it.
    form = {"model": LOOP, "stream": "true"}
    with capped_http.stream("POST", "/v1/audio/transcriptions", files={"file": ("t.wav", clip)},
                            data=form) as response:
        lines = response.iter_lines()  # held: dropping a half-read iterator would close the connection early
        first = json.loads(next(line for line in lines if line.startswith("data: "))[6:])
        assert first == {"type": "transcript.text.delta", "delta": "Tick"}
        assert busy(capped_http, f"{LOOP}:F32") >= 1
    # The loop model would fill its 32k context (minutes); leaving stopped it.
    wait_for(lambda: busy(capped_http, f"{LOOP}:F32") == 0, timeout=20)


def test_a_client_that_leaves_before_a_whole_answer_frees_the_slot(capped, capped_http):
    # The engine notices a closed connection of a request it answers whole only when no other result
    # arrives for a second (llama.cpp's wait restarts its timeout on each), and the polling below is such
    # traffic: the groups of a non-streamed transcript are streamed from the engine too, so it stops at once.
    with httpx.Client(base_url=capped.base_url, timeout=httpx.Timeout(60, read=3)) as impatient:
        with pytest.raises(httpx.ReadTimeout):  # the loop model runs for far longer than that
            impatient.post("/v1/audio/transcriptions", files={"file": ("t.wav", wav_bytes(1.0))}, data={"model": LOOP})
    wait_for(lambda: busy(capped_http, f"{LOOP}:F32") == 0, timeout=10)
    assert "the generation was stopped" in " ".join(capped.output.split())  # the log wraps its lines
