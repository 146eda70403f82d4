"""Hostile input never produces a 5xx or a crash: hand-picked nasty bodies, then a property-based
fuzz run over every route the server's own /openapi.json lists."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nexa.wire.openai import ChatCompletionRequest, CompletionRequest
from tests.conftest import ServerProcess
from tests.fixtures.media_samples import image_bytes

SCRIPT = "Hello from a scripted model."
HI = [{"role": "user", "content": "hi"}]
CHAT = {"model": "test/qwen3-text", "messages": HI}
COMPLETION = {"model": "test/qwen3-text", "prompt": "hi"}
VISION = "test/vision-gemma3"
AUDIO = "test/audio-qwen2a"


def assert_client_error(response: httpx.Response) -> dict:
    """A 4xx in OpenAI's shape: the verdict for every hostile input."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels in a few bytes (a decompression bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


# ---------------------------------------------------------------- hand-picked hostile bodies

RAW_BODIES = {
    "nan temperature": b'{"model": "test/qwen3-text", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
    "infinite top_p": b'{"model": "test/qwen3-text", "messages": [{"role": "user", "content": "hi"}], "top_p": Infinity}',
    "overflowing float": b'{"model": "test/qwen3-text", "messages": [{"role": "user", "content": "hi"}], "temperature": 1e999}',
    "deep nesting": b'{"model": "test/qwen3-text", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "deep objects": b'{"model": "test/qwen3-text", "x": ' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"}",
    "invalid utf-8": b'{"model": "test/qwen3-\xff\xfe", "messages": [{"role": "user", "content": "\xc3\x28"}]}',
    "utf-16 bom": '{"model": "test/qwen3-text"}'.encode("utf-16"),
    "not json": b"hello there",
    "form body": b"model=test/qwen3-text&messages=hi",
    "binary": bytes(range(256)),
    "empty": b"",
    "truncated json": b'{"model": "test/qwen3-text", "messages": [',
    "json array": b"[1, 2, 3]",
    "json null": b"null",
    "json string": b'"hello"',
    "huge integer": b'{"model": "test/qwen3-text", "messages": [], "max_tokens": ' + b"9" * 5000 + b"}",
    "lone surrogate": b'{"model": "test/qwen3-text", "messages": [{"role": "user", "content": "\\ud800"}], "user": 1}',
}


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
@pytest.mark.parametrize("name", list(RAW_BODIES))
def test_malformed_bodies_are_4xx(http, path, name):
    assert_client_error(http.post(path, content=RAW_BODIES[name], headers={"Content-Type": "application/json"}))


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_tokens", -2), ("max_tokens", 0), ("max_tokens", 10**40), ("seed", 10**100), ("top_k", 2**70),
     ("temperature", -0.5), ("temperature", 10**400), ("logit_bias", {"1": 1e300}), ("stop", ["x"] * 1000),
     ("n", 2**64), ("top_logprobs", -3)],
)
def test_out_of_range_numbers_are_400(http, field, value):
    assert_client_error(http.post("/v1/chat/completions", json={**CHAT, field: value}))


@pytest.mark.parametrize(
    ("model", "request_type"),
    [(ChatCompletionRequest, CHAT), (CompletionRequest, COMPLETION)],
    ids=["chat", "completion"],
)
def test_a_wrong_type_in_any_field_is_never_a_5xx(http, model, request_type):
    path = "/v1/chat/completions" if model is ChatCompletionRequest else "/v1/completions"
    for field in model.model_fields:
        name = model.model_fields[field].alias or field
        for wrong in ({"nested": [1, {"x": None}]}, [[1], "a", None], "a string", 123456789, -1.5, True):
            response = http.post(path, json={**request_type, name: wrong})
            assert response.status_code < 500, (name, wrong, response.text[:300])
            if response.status_code >= 400:
                assert_client_error(response)


def test_unknown_fields_are_ignored(client):
    reply = client.chat.completions.create(
        model="test/qwen3-text", messages=HI, extra_body={"frobnicate": {"deep": [1, 2]}, "x-new-openai-field": 3}
    )
    assert reply.choices[0].message.content == SCRIPT


def image_part(url: str) -> dict:
    return {"role": "user", "content": [{"type": "text", "text": "what?"}, {"type": "image_url", "image_url": {"url": url}}]}


def audio_part(data: str, fmt: str = "mp3") -> dict:
    return {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": data, "format": fmt}}]}


PNG_B64 = base64.b64encode(image_bytes("PNG")).decode()


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (VISION, image_part("data:image/png;base64," + PNG_B64[: len(PNG_B64) // 2 + 1])),  # truncated base64
        (VISION, image_part("data:image/png;base64," + base64.b64encode(image_bytes("PNG")[:60]).decode())),  # cut file
        (VISION, image_part("data:image/png;base64,")),  # zero bytes
        (VISION, image_part("data:image/png;base64," + base64.b64encode(png_header(10_000, 10_000)).decode())),
        (VISION, image_part("data:image/png;base64," + base64.b64encode(png_header(2**31 - 1, 2**31 - 1)).decode())),
        (VISION, image_part("data:image/png;base64,!!!not base64!!!")),
        (VISION, image_part("data:,")),
        (VISION, image_part("relative/path.png")),
        (VISION, image_part("javascript:alert(1)")),
        (AUDIO, audio_part(base64.b64encode(b"ID3" + b"\0" * 7).decode())),  # an ID3 tag and nothing else
        (AUDIO, audio_part(base64.b64encode(b"this is not an mp3 at all" * 10).decode())),
        (AUDIO, audio_part("")),
        (AUDIO, audio_part("%%%", "wav")),
        ("test/qwen3-text", image_part("data:image/png;base64," + PNG_B64)),  # a text-only model
    ],
    ids=["truncated-base64", "truncated-png", "zero-byte-image", "100-megapixel-png", "gigapixel-png", "bad-base64",
         "empty-data-uri", "relative-path", "javascript-url", "id3-only-mp3", "mp3-that-is-not", "empty-audio",
         "garbage-audio", "image-to-text-model"],
)
def test_hostile_media_is_4xx(http, model, message):
    assert_client_error(http.post("/v1/chat/completions", json={"model": model, "messages": [message]}))


def test_the_server_is_still_healthy_after_the_hostile_bodies(http, client):
    assert http.get("/health").status_code == 200
    assert client.chat.completions.create(model="test/qwen3-text", messages=HI).choices[0].message.content == SCRIPT


# ---------------------------------------------------------------- property-based fuzzing of every route

# Valid bodies to mutate, so that the fuzzer reaches past the first field check.
BASES = {
    "/v1/chat/completions": CHAT,
    "/v1/completions": COMPLETION,
    "/v1/embeddings": {"model": "test/bert-embed", "input": "hi"},
    "/v1/rerank": {"model": "test/bert-rerank", "query": "q", "documents": ["a", "b"]},
    "/v1/reranking": {"model": "test/bert-rerank", "query": "q", "documents": ["a", "b"]},
}
ENDLESS = {"/models/sse"}  # an event feed that stays open: the fuzzer would wait on it for ever
MODELS = ["test/qwen3-text", "test/qwen3-text:F32", "test/qwen3-text:Q9", "nobody/nothing", "no-slash", "", "a/b/c"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.sampled_from(MODELS),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def fuzz_server(session_store) -> Iterator[httpx.Client]:
    """Its own server: the fuzzer loads and unloads models, which must not disturb other tests."""
    process = ServerProcess(session_store.root)
    with httpx.Client(base_url=process.base_url, timeout=60) as http:
        yield http
    process.stop()
    assert "Traceback" not in process.output, process.output[-3000:]


@pytest.fixture(scope="module")
def routes(fuzz_server) -> list[tuple[str, str, list[str]]]:
    """(method, path, body field names) for every route of the server's own API description."""
    schema = fuzz_server.get("/openapi.json").json()
    components = schema.get("components", {}).get("schemas", {})
    found = []
    for path, item in schema["paths"].items():
        if path in ENDLESS:
            continue
        for method, operation in item.items():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            ref = body.get("$ref", "").rsplit("/", 1)[-1]
            found.append((method.upper(), path, sorted(components.get(ref, {}).get("properties", {}))))
    assert len(found) >= 6
    return found


def fill_path(path: str, value: str) -> str:
    """Put a fuzzed value into every {param} of a route's path."""
    while "{" in path:
        start, end = path.index("{"), path.index("}")
        path = path[:start] + quote(value, safe="/:") + path[end + 1 :]
    return path


@st.composite
def mutated_body(draw: st.DrawFn, path: str, fields: list[str]) -> Any:
    """Mostly a valid body with fields replaced, removed or added; sometimes any JSON at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    body = dict(BASES.get(path, {"model": "test/qwen3-text"}))
    for field in draw(st.lists(st.sampled_from(fields or ["model"]), max_size=3, unique=True)):
        if draw(st.booleans()):
            body[field] = draw(json_values)
        else:
            body.pop(field, None)
    return body


def test_fuzzing_every_route_finds_no_5xx(fuzz_server, routes):
    @settings(max_examples=500, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        method, path, fields = data.draw(st.sampled_from(routes))
        url = fill_path(path, data.draw(st.text(max_size=30) | st.sampled_from(MODELS)))
        if method in ("GET", "DELETE", "HEAD"):
            response = fuzz_server.request(method, url)
        else:
            body = data.draw(mutated_body(path, fields))
            response = fuzz_server.request(method, url, content=json.dumps(body).encode())
        assert response.status_code < 500, (method, url, response.status_code, response.text[:500])

    run()
    assert fuzz_server.get("/health").status_code == 200
