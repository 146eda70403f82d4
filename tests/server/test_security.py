"""Safe by default: API keys, CORS, the Host check, body and request limits, worker isolation."""

from __future__ import annotations

import asyncio
import hmac
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from nexa.compat.bodies import completion_body
from nexa.config import DEFAULT_MAX_BODY, Settings
from nexa.runtime import ModelManager
from nexa.server import security
from nexa.server.errors import dialect
from nexa.wire.openai import MAX_MEDIA, MAX_MESSAGES, MAX_PARTS, MAX_PROMPTS, CompletionRequest
from nexa.store import FileEntry, Manifest, ModelType, QuantEntry, Store
from tests.conftest import ServerProcess
from tests.fixtures.media_samples import image_bytes

SCRIPT = "Hello from a scripted model."
HI = [{"role": "user", "content": "hi"}]
CHAT = {"model": "test/qwen3-text", "messages": HI}
KEYS = ("alpha-key", "beta-key")
APP_ORIGIN = "https://app.example"
LIMIT = 64 * 1024


def assert_error(response: httpx.Response, status: int, type_: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == type_
    return error


def own_address() -> str | None:
    """This machine's address on its default route, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = sock.getsockname()[0]
    return None if address.startswith("127.") else address


@pytest.fixture(scope="module")
def keyed(session_store: Store) -> Iterator[ServerProcess]:
    """A server with two keys, one allowed web origin and a small body limit."""
    args = ("--api-key", KEYS[0], "--api-key", KEYS[1], "--origins", APP_ORIGIN, "--max-body", str(LIMIT))
    process = ServerProcess(session_store.root, *args)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def keyed_http(keyed: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=keyed.base_url, timeout=60) as client:
        yield client


def bearer(key: str = KEYS[0]) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# ---------------------------------------------------------------- API keys


def test_health_needs_no_key(keyed_http):
    assert keyed_http.get("/health").status_code == 200


def test_every_other_route_needs_the_key(keyed_http):
    paths = keyed_http.get("/openapi.json", headers=bearer()).json()["paths"]
    routes = [(method.upper(), path) for path, item in paths.items() for method in item if path != "/health"]
    routes += [("GET", "/docs"), ("GET", "/openapi.json"), ("GET", "/no/such/route")]
    assert len(routes) >= 6
    for method, path in routes:
        url = path.replace("{model_id}", "test/qwen3-text")
        response = keyed_http.request(method, url, json=CHAT)
        if dialect(path) is not None:  # another dialect's error shape
            assert response.status_code == 401 and "--api-key" in response.text, (method, path)
            continue
        error = assert_error(response, 401, "authentication_error")
        assert "--api-key" in error["message"], (method, path)


def test_a_wrong_key_is_an_openai_authentication_error(keyed):
    client = openai.OpenAI(base_url=keyed.base_url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="test/qwen3-text", messages=HI)
    assert info.value.status_code == 401 and info.value.body["type"] == "authentication_error"
    assert "wrong" not in info.value.message  # the key sent is never echoed


@pytest.mark.parametrize("key", KEYS)
def test_each_configured_key_works(keyed, key):
    client = openai.OpenAI(base_url=keyed.base_url + "/v1", api_key=key, max_retries=0, timeout=60)
    reply = client.chat.completions.create(model="test/qwen3-text", messages=HI)
    assert reply.choices[0].message.content == SCRIPT


def test_streams_pass_the_key_check_unbuffered(keyed):
    client = openai.OpenAI(base_url=keyed.base_url + "/v1", api_key=KEYS[1], max_retries=0, timeout=60)
    pieces = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="test/qwen3-text", messages=HI, stream=True) if c.choices]
    assert "".join(pieces) == SCRIPT and len([p for p in pieces if p]) > 1


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": f"Basic {KEYS[0]}"}, {"Authorization": "Bearer"}, {"Authorization": f"Bearer {KEYS[0]}x"},
     {"Authorization": KEYS[0]}, {"X-API-Key": f"{KEYS[0]}x"}, {"X-API-Key": ""}],
)
def test_only_a_bearer_or_x_api_key_header_with_a_known_key_passes(keyed_http, headers):
    assert_error(keyed_http.get("/v1/models", headers=headers), 401, "authentication_error")
    assert keyed_http.get(f"/v1/models?api_key={KEYS[0]}").status_code == 401


def test_keys_are_compared_in_constant_time(monkeypatch):
    compared = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return real(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", spy)
    check = security.APIKeyCheck(app=None, keys=list(KEYS))
    assert check._problem(b"Bearer " + KEYS[0].encode()) is None
    assert compared == [k.encode() for k in KEYS]  # every key, even after a match


def test_api_keys_come_from_a_comma_separated_environment_variable(monkeypatch):
    monkeypatch.setenv("NEXA_API_KEY", "key-one, key-two,key-three")
    settings = Settings()
    assert [k.get_secret_value() for k in settings.api_keys] == ["key-one", "key-two", "key-three"]
    assert "key-" not in repr(settings)


def test_a_network_bind_without_keys_warns_at_start(session_store):
    address = own_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address to bind")
    process = ServerProcess(session_store.root, host=address)
    try:
        # No Host check off loopback: clients may use any name for the machine.
        assert httpx.get(process.base_url + "/health", headers={"Host": "my-box.lan"}).status_code == 200
    finally:
        process.stop()
    assert "Warning" in process.output and "--api-key" in process.output


# ---------------------------------------------------------------- CORS and the Host check


def preflight(http: httpx.Client, origin: str) -> httpx.Response:
    return http.options("/v1/chat/completions", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, nexa-keepcache",
    })


@pytest.mark.parametrize("origin", ["http://localhost:5173", "http://127.0.0.1:8080", "https://[::1]:3000", "http://localhost"])
def test_localhost_origins_may_call_from_a_browser_by_default(http, origin):
    response = preflight(http, origin)
    assert response.status_code == 200 and response.headers["access-control-allow-origin"] == origin
    allowed = response.headers["access-control-allow-headers"].lower()
    assert all(h in allowed for h in ("authorization", "content-type", "nexa-keepcache"))
    assert http.get("/v1/models", headers={"Origin": origin}).headers["access-control-allow-origin"] == origin


@pytest.mark.parametrize("origin", ["https://evil.example", "http://localhost.evil.example", "null"])
def test_other_origins_are_refused_by_default(http, origin):
    assert "access-control-allow-origin" not in preflight(http, origin).headers
    assert "access-control-allow-origin" not in http.get("/v1/models", headers={"Origin": origin}).headers


def test_origins_flag_replaces_the_default_list(keyed_http):
    assert preflight(keyed_http, APP_ORIGIN).headers["access-control-allow-origin"] == APP_ORIGIN
    assert "access-control-allow-origin" not in preflight(keyed_http, "http://localhost:5173").headers
    # A browser must be able to read a 401 to show it.
    denied = keyed_http.get("/v1/models", headers={"Origin": APP_ORIGIN})
    assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == APP_ORIGIN


def test_star_opens_cors_to_every_origin():
    assert security.cors_options(["*"])["allow_origins"] == ["*"]
    assert security.cors_options([])["allow_origin_regex"] == security.LOCAL_ORIGINS
    assert security.cors_options(["https://a.example/"])["allow_origins"] == ["https://a.example"]
    assert Settings(origins="https://a.example, *").origins == ["https://a.example", "*"]


@pytest.mark.parametrize("host", ["evil.example", "evil.example:18181", "127.0.0.1.evil.example", "10.0.0.5"])
def test_a_loopback_server_refuses_foreign_host_headers(http, host):
    error = assert_error(http.get("/v1/models", headers={"Host": host}), 403, "permission_error")
    assert "DNS-rebinding" in error["message"]


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:1234", "127.0.0.1", "[::1]:99"])
def test_a_loopback_server_accepts_loopback_host_headers(http, host):
    assert http.get("/v1/models", headers={"Host": host}).status_code == 200


# ---------------------------------------------------------------- body and request limits


def test_default_body_limit_fits_a_few_images():
    assert Settings().max_body == DEFAULT_MAX_BODY == 32 * 1024 * 1024


def test_a_body_over_the_limit_is_413(keyed_http):
    body = {**CHAT, "messages": [{"role": "user", "content": "x" * LIMIT}]}
    error = assert_error(keyed_http.post("/v1/chat/completions", json=body, headers=bearer()), 413, "request_too_large")
    assert "--max-body" in error["message"]


def test_a_chunked_body_without_content_length_is_counted(keyed_http):
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "test/qwen3-text", "messages": [{"role": "user", "content": "'
        for _ in range(LIMIT // 1024 + 1):
            yield b"x" * 1024
        yield b'"}]}'

    response = keyed_http.post("/v1/chat/completions", content=chunks(), headers=bearer())
    assert_error(response, 413, "request_too_large")


def test_a_body_under_the_limit_is_served(keyed_http):
    body = {**CHAT, "messages": [{"role": "user", "content": "x" * 100}]}
    assert keyed_http.post("/v1/chat/completions", json=body, headers=bearer()).status_code == 200


def test_the_body_deadline_times_out_a_read_and_any_read_after_it():
    async def scenario() -> None:
        deadline = security._Deadline(0.05)
        never = asyncio.Event()

        async def blocked() -> dict:
            await never.wait()
            return {}

        with pytest.raises(TimeoutError):
            await deadline.within(blocked)
        with pytest.raises(TimeoutError):  # the body is still late
            await deadline.within(blocked)

    asyncio.run(scenario())


def test_the_body_deadline_passes_other_cancellations_on_and_ends_with_its_body():
    async def scenario() -> None:
        deadline = security._Deadline(0.05)
        reading = asyncio.ensure_future(deadline.within(asyncio.Event().wait))
        await asyncio.sleep(0)
        reading.cancel()  # the client left: a cancellation, not a timeout
        with pytest.raises(asyncio.CancelledError):
            await reading
        deadline = security._Deadline(0.05)
        assert await deadline.within(lambda: asyncio.sleep(0, {"type": "http.request"})) == {"type": "http.request"}
        deadline.cancel()  # the body is in: no timer left to fire
        await asyncio.sleep(0.1)
        assert not deadline._expired

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**CHAT, "messages": HI * (MAX_MESSAGES + 1)}, "messages"),
        ({**CHAT, "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}] * (MAX_PARTS + 1)}]},
         "messages.0.content"),
        ({**CHAT, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}] * (MAX_MEDIA + 1)}]}, "messages"),
    ],
)
def test_chat_requests_have_bounded_size(http, body, param):
    error = assert_error(http.post("/v1/chat/completions", json=body), 400, "invalid_request_error")
    assert error["param"] == param


def test_completion_prompts_are_bounded(http):
    body = {"model": "test/qwen3-text", "prompt": ["x"] * (MAX_PROMPTS + 1)}
    assert assert_error(http.post("/v1/completions", json=body), 400, "invalid_request_error")["param"] == "prompt"


def test_huge_max_tokens_is_clamped_to_the_context(client):
    reply = client.chat.completions.create(model="test/qwen3-text", messages=HI, max_tokens=9_000_000)
    assert reply.choices[0].message.content == SCRIPT
    manifest = Manifest(name="a/b", model_type=ModelType.llm, source="test",
                        quants={"F32": QuantEntry(files=[FileEntry(name="m.gguf", size=1, sha256="0")])})
    assert completion_body(CompletionRequest(model="a/b", prompt="x", max_tokens=9_000_000), manifest, ctx=1024)["max_tokens"] == 1024


# ---------------------------------------------------------------- workers


def test_a_worker_listens_on_loopback_and_refuses_requests_without_its_key(session_store, caplog):
    keys: list[str] = []

    async def check() -> None:
        manager = ModelManager(session_store, Settings(datadir=session_store.root, ctx=256, parallel=1, threads=1))
        try:
            manifest, quant = manager.resolve("test/qwen3-text")
            async with await manager.acquire(manifest, quant) as lease:
                worker = lease.worker
                assert worker.base_url.startswith("http://127.0.0.1:")
                key = worker.spec.api_key
                keys.append(key)
                async with httpx.AsyncClient(base_url=worker.base_url) as http:
                    prompt = {"prompt": "hi", "max_tokens": 1}
                    assert (await http.post("/v1/completions", json=prompt)).status_code == 401
                    wrong = {"Authorization": "Bearer " + key[:-1]}
                    assert (await http.post("/v1/completions", json=prompt, headers=wrong)).status_code == 401
                    assert (await http.post("/v1/completions", json=prompt, headers=worker.headers)).status_code == 200
                assert key not in repr(worker.spec)
                assert all(key not in line for line in worker._stderr_tail)
        finally:
            await manager.close()

    with caplog.at_level(logging.DEBUG):
        asyncio.run(check())
    assert keys and caplog.records and all(keys[0] not in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- media paths off loopback


@pytest.fixture(scope="module")
def network_server(session_store, tmp_path_factory) -> Iterator[tuple[httpx.Client, Path]]:
    """Bound to this machine's network address, with a key and one media root."""
    address = own_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address to bind")
    root = tmp_path_factory.mktemp("media-root")
    process = ServerProcess(session_store.root, "--api-key", KEYS[0], "--media-root", str(root), host=address)
    with httpx.Client(base_url=process.base_url, headers=bearer(), timeout=60) as client:
        yield client, root
    process.stop()


def look_at(path: Path) -> dict:
    parts = [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": str(path)}}]
    return {"model": "test/vision-gemma3", "messages": [{"role": "user", "content": parts}]}


def test_a_network_server_reads_media_under_its_media_root(network_server):
    http, root = network_server
    (root / "cat.png").write_bytes(image_bytes("PNG"))
    response = http.post("/v1/chat/completions", json=look_at(root / "cat.png"))
    assert response.status_code == 200, response.text


def test_a_network_server_refuses_other_paths_without_showing_them(network_server, tmp_path):
    http, root = network_server
    secret = tmp_path / "secret.png"
    secret.write_text("the secret contents")
    (root / "escape.png").symlink_to(secret)
    for path in (secret, root / "escape.png", root / ".." / secret.name, Path("/etc/passwd")):
        error = assert_error(http.post("/v1/chat/completions", json=look_at(path)), 403, "permission_error")
        assert "--media-root" in error["message"] and "secret contents" not in error["message"]
