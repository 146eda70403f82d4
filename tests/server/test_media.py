"""Image and audio input end to end: every accepted form reaches the engine, every bad one is a clear 4xx.

The scripted models answer the same whatever they see, so `usage.prompt_tokens` growing
is the proof that the media reached the engine.
"""

from __future__ import annotations

import base64
import os
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.fixtures.media_samples import image_bytes, mp3_bytes, wav_bytes

VISION = "test/vision-gemma3"
AUDIO = "test/audio-qwen2a"
SCRIPT = "Hello from a scripted model."
PNG = image_bytes("PNG")


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def ask(*parts: dict) -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, *parts]}]


def image(ref: str, plain: bool = False) -> dict:
    return {"type": "image_url", "image_url": ref if plain else {"url": ref}}


def prompt_tokens(client, model: str, messages: list[dict]) -> int:
    reply = client.chat.completions.create(model=model, messages=messages)
    assert reply.choices[0].message.content == SCRIPT
    return reply.usage.prompt_tokens


def post_error(http, model: str, messages: list[dict], status: int = 400) -> dict:
    response = http.post("/v1/chat/completions", json={"model": model, "messages": messages})
    assert response.status_code == status, response.text
    return response.json()["error"]


@pytest.fixture(scope="module")
def text_only_tokens(client) -> int:
    return prompt_tokens(client, VISION, ask())


# ---------------------------------------------------------------- a tiny web server for URL media


class _Files(BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {
        "/cat.png": PNG,
        "/cat.webp": image_bytes("WEBP"),
        "/huge.png": b"\0" * (21 << 20),
        "/sound.wav": wav_bytes(),
    }
    redirects: ClassVar[dict[str, str]] = {"/moved.png": "/cat.png", "/to-ftp.png": "ftp://example.com/cat.png"}

    def do_GET(self) -> None:
        if self.path in self.redirects:
            self.send_response(302)
            self.send_header("Location", self.redirects[self.path])
            self.end_headers()
        elif self.path in self.files:
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.files[self.path])))
            self.end_headers()
            self.wfile.write(self.files[self.path])
        else:
            self.send_error(404)

    def log_message(self, *args: object) -> None:
        pass


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the nexa server hangs up on oversized bodies on purpose


@pytest.fixture(scope="module")
def web() -> Iterator[str]:
    httpd = _QuietServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def fetching(session_store) -> Iterator[httpx.Client]:
    """A server that may fetch from this machine, where the test web server runs."""
    process = ServerProcess(session_store.root, "--allow-private-urls")
    with httpx.Client(base_url=process.base_url, timeout=60) as http:
        yield http
    process.stop()


@pytest.fixture(scope="module")
def home_file() -> Iterator[Path]:
    """An image under the home directory, for `~/...` references (the server's HOME is ours)."""
    with tempfile.TemporaryDirectory(dir=Path.home(), prefix=".nexa-test-") as folder:
        path = Path(folder) / "cat.png"
        path.write_bytes(PNG)
        yield path


# ---------------------------------------------------------------- images


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_image_formats_reach_the_engine_as_data_uris(client, text_only_tokens, fmt):
    ref = data_uri(image_bytes(fmt), f"image/{fmt.lower()}")
    assert prompt_tokens(client, VISION, ask(image(ref))) > text_only_tokens


def test_image_url_may_be_a_plain_string_and_the_mlp_projector_reads_it(client):
    with_image = prompt_tokens(client, "test/vision-mlp", ask(image(data_uri(PNG, "image/png"), plain=True)))
    assert with_image > prompt_tokens(client, "test/vision-mlp", ask())


def test_each_image_of_a_message_counts(client, text_only_tokens):
    one = prompt_tokens(client, VISION, ask(image(data_uri(PNG, "image/png"))))
    three = prompt_tokens(client, VISION, ask(*[image(data_uri(image_bytes(f), "image/x")) for f in ("PNG", "JPEG", "GIF")]))
    assert three - text_only_tokens > 2 * (one - text_only_tokens)


def test_local_paths_absolute_home_and_file_urls(client, text_only_tokens, tmp_path, home_file):
    path = tmp_path / "my cat.jpg"
    path.write_bytes(image_bytes("JPEG"))
    home_ref = "~/" + str(home_file.relative_to(Path.home()))
    for ref in (str(path), path.as_uri(), home_ref):
        assert prompt_tokens(client, VISION, ask(image(ref, plain=True))) > text_only_tokens, ref


def test_http_urls_are_fetched_by_the_server_following_redirects(fetching, web):
    for name in ("/cat.png", "/cat.webp", "/moved.png"):
        response = fetching.post("/v1/chat/completions", json={"model": VISION, "messages": ask(image(web + name))})
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"] == SCRIPT


@pytest.mark.parametrize(
    ("path", "says"),
    [("/missing.png", "HTTP 404"), ("/huge.png", "20 MiB limit"), ("/to-ftp.png", "http or https")],
)
def test_failed_or_oversized_fetches_are_refused(fetching, web, path, says):
    response = fetching.post("/v1/chat/completions", json={"model": VISION, "messages": ask(image(web + path))})
    assert response.status_code in (400, 403)
    error = response.json()["error"]
    assert says in error["message"] and error["param"] == "messages[0].content[1]"


def test_unreachable_hosts_are_refused(fetching):
    error = post_error(fetching, VISION, ask(image("http://127.0.0.1:9/cat.png")))
    assert "failed" in error["message"]


def test_the_default_server_does_not_fetch_from_private_addresses(http, web):
    error = post_error(http, VISION, ask(image(web + "/cat.png")), status=403)
    assert "--allow-private-urls" in error["message"] and error["param"] == "messages[0].content[1]"


# ---------------------------------------------------------------- audio


def test_wav_and_mp3_reach_the_engine_in_both_forms(client, tmp_path):
    text_only = prompt_tokens(client, AUDIO, ask())
    wav = base64.b64encode(wav_bytes()).decode()
    path = tmp_path / "clip.mp3"
    path.write_bytes(mp3_bytes())
    forms = [
        {"type": "input_audio", "input_audio": {"data": wav, "format": "wav"}},
        {"type": "input_audio", "input_audio": {"data": base64.b64encode(mp3_bytes()).decode(), "format": "mp3"}},
        {"type": "input_audio", "input_audio": str(path)},
        {"type": "input_audio", "input_audio": data_uri(wav_bytes(), "audio/wav")},
    ]
    for part in forms:
        assert prompt_tokens(client, AUDIO, ask(part)) > text_only + 100


def test_audio_urls_are_fetched_too(fetching, web):
    part = {"type": "input_audio", "input_audio": web + "/sound.wav"}
    response = fetching.post("/v1/chat/completions", json={"model": AUDIO, "messages": ask(part)})
    assert response.status_code == 200, response.text


# ---------------------------------------------------------------- bad input


def test_media_sent_to_a_model_without_that_capability_names_it(http):
    audio = {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav_bytes()).decode(), "format": "wav"}}
    cases = [
        ("test/qwen3-text", image(data_uri(PNG, "image/png")), "cannot read images"),
        (AUDIO, image(data_uri(PNG, "image/png")), "cannot read images"),
        (VISION, audio, "cannot read audio"),
    ]
    for model, part, says in cases:
        error = post_error(http, model, ask(part))
        assert says in error["message"] and model in error["message"]
        assert error["param"] == "messages[0].content[1]"


@pytest.mark.parametrize(
    ("ref", "says"),
    [
        ("/no/such/cat.png", "no file at"),
        ("cat.png", "not a data: URI"),
        ("data:image/png;base64,!!!", "base64"),
        (data_uri(b"this is no image", "image/png"), "cannot be decoded"),
        (data_uri(PNG[:50], "image/png"), "cannot be decoded"),
    ],
)
def test_unusable_images_are_400_naming_the_part(http, ref, says):
    error = post_error(http, VISION, ask(image(ref)))
    assert says in error["message"] and error["param"] == "messages[0].content[1]"


def test_a_directory_or_unreadable_file_is_400(http, tmp_path):
    locked = tmp_path / "locked.png"
    locked.write_bytes(PNG)
    locked.chmod(0)
    refs = [str(tmp_path)] + ([] if os.geteuid() == 0 else [str(locked)])  # root reads anything
    for ref in refs:
        assert post_error(http, VISION, ask(image(ref)))["param"] == "messages[0].content[1]"


def test_garbage_audio_is_400(http):
    part = {"type": "input_audio", "input_audio": {"data": base64.b64encode(b"garbage" * 20).decode(), "format": "mp3"}}
    error = post_error(http, AUDIO, ask(part))
    assert "WAV, MP3 or FLAC" in error["message"] and error["param"] == "messages[0].content[1]"


def test_unknown_content_part_type_is_400(http):
    error = post_error(http, VISION, ask({"type": "video_url", "video_url": {"url": "x"}}))
    assert "video_url" in error["message"] and error["param"] == "messages.0.content.1"


def test_bad_media_does_not_load_the_model(fetching):
    error = post_error(fetching, "test/vision-mlp", ask(image("/no/such/cat.png")))
    assert error["code"] == "invalid_media"
    assert fetching.get("/v1/models/test/vision-mlp").json()["loaded"] is False


def test_the_server_log_holds_no_file_contents(session_store, tmp_path):
    secret = tmp_path / "notes.png"
    secret.write_text("MY-BANK-PASSWORD-1234")
    process = ServerProcess(session_store.root, "--log-level", "debug")
    try:
        with httpx.Client(base_url=process.base_url, timeout=60) as http:
            for ref in (str(secret), data_uri(secret.read_bytes(), "image/png")):
                post_error(http, VISION, ask(image(ref)))
    finally:
        process.stop()
    log = "".join(process.output.split())  # the console log wraps long lines
    assert log.count("cannotbedecoded") >= 2  # both refusals are logged...
    assert "MY-BANK-PASSWORD" not in log and "TVktQkFOSy" not in log  # ...the file's bytes are not, nor their base64
