"""A web page the user visits cannot drive nexa (issue 21, item 1): CORS only hides answers, so a request
from a page whose origin is not allowed is refused before any work, on every route that changes state or
runs a model, in the shape of the dialect it came in on; programs (no Origin) and allowed pages pass."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nexa.server import security
from nexa.store import Store
from tests.conftest import ServerProcess, import_tiny
from tests.fixtures.fake_hub import FakeHub, nexa_env

MODEL = "test/qwen3-text"
EVIL = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
IMG = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}
PULLED = "test-org/Tiny-GGUF"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path, fake_hub: FakeHub) -> Iterator[ServerProcess]:
    """A server with one model whose pulls go to the fake Hub: what a hostile page would want to use."""
    root = tmp_path_factory.mktemp("cross-site")
    import_tiny(Store(root / "data"), tiny_dir, MODEL, ["qwen3-script-text.gguf"], None)
    process = ServerProcess(root / "data", env=nexa_env(fake_hub, root / "data", root / "hf-home"))
    process.datadir = root / "data"  # type: ignore[attr-defined]
    yield process
    process.stop()


def loaded(base: str) -> list[str]:
    return [m["model"] for m in httpx.get(base + "/v1/ps").json()["data"]]


def models(base: str) -> set[str]:
    return {m["id"] for m in httpx.get(base + "/v1/models").json()["data"]}


# (method, path, body, the error's shape: a key its body has at the top)
HOSTILE = [
    ("POST", "/v1/load", {"model": MODEL, "keep_alive": -1}, "error"),
    ("POST", "/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}, "error"),
    ("POST", "/v1/completions", {"model": MODEL, "prompt": "hi"}, "error"),
    ("POST", "/v1/messages", {"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
     "type"),
    ("POST", "/api/chat", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}, "error"),
    ("POST", "/api/generate", {"model": MODEL, "prompt": "hi"}, "error"),
    ("POST", "/api/pull", {"model": f"hf.co/{PULLED}"}, "error"),
    ("POST", "/models", {"model": PULLED}, "error"),
    ("POST", "/models/load", {"model": MODEL}, "error"),
    ("POST", "/v1/unload", {"model": MODEL}, "error"),
]


@pytest.mark.parametrize(("method", "path", "body", "key"), HOSTILE, ids=[f"{m} {p}" for m, p, *_ in HOSTILE])
def test_a_text_plain_post_from_another_site_is_refused_and_changes_nothing(site, method, path, body, key):
    response = httpx.request(method, site.base_url + path, content=json.dumps(body), headers=EVIL, timeout=30)
    assert response.status_code == 403, response.text
    assert key in response.json() and "evil.example" in response.text
    assert "access-control-allow-origin" not in response.headers
    time.sleep(0.2)  # a pull or a load that had started would show by now
    assert loaded(site.base_url) == [] and PULLED not in {m.split(":")[0] for m in models(site.base_url)}
    assert not (site.datadir / "models" / PULLED).exists()


def test_an_image_tag_from_another_site_loads_no_model(site):
    response = httpx.get(site.base_url + "/props", params={"model": MODEL, "autoload": "true"}, headers=IMG)
    assert response.status_code == 403 and response.json()["error"]["code"] == "origin_not_allowed"
    deleted = httpx.request("DELETE", site.base_url + "/api/delete", json={"model": MODEL}, headers=IMG)
    assert deleted.status_code == 403 and "error" in deleted.json()
    assert loaded(site.base_url) == [] and MODEL in {m.split(":")[0] for m in models(site.base_url)}


def test_the_anthropic_and_ollama_routes_answer_in_their_own_shape(site):
    anthropic = httpx.post(site.base_url + "/v1/messages", content="{}", headers=EVIL).json()
    assert anthropic["type"] == "error" and anthropic["error"]["type"] == "permission_error"
    ollama = httpx.post(site.base_url + "/api/chat", content="{}", headers=EVIL).json()
    assert set(ollama) == {"error"} and isinstance(ollama["error"], str)


def test_programs_localhost_pages_and_the_ui_itself_still_work(site):
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    # A program: no Origin, and curl's form content type is still read as JSON.
    assert httpx.post(site.base_url + "/v1/chat/completions", content=json.dumps(chat),
                      headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=60).status_code == 200
    local = httpx.post(site.base_url + "/v1/chat/completions", json=chat, timeout=60,
                       headers={"Origin": "http://localhost:5173", "Sec-Fetch-Site": "cross-site"})
    assert local.status_code == 200 and local.headers["access-control-allow-origin"] == "http://localhost:5173"
    # The UI, opened at whatever address reaches the server, is same-origin.
    same = httpx.get(site.base_url + "/props", params={"model": MODEL},
                     headers={"Origin": site.base_url, "Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 200
    # A page, even an allowed one, must send JSON as JSON: text/plain is not read as JSON for it.
    plain = httpx.post(site.base_url + "/v1/chat/completions", content=json.dumps(chat),
                       headers={"Origin": "http://localhost:5173", "Content-Type": "text/plain"})
    assert plain.status_code == 400
    # A link to the UI from another site opens it; /health answers.
    assert httpx.get(site.base_url + "/health", headers=IMG).status_code == 200
    httpx.post(site.base_url + "/v1/unload", json={"model": MODEL})


@pytest.mark.parametrize(("origins", "origin", "allowed"), [
    ([], "http://localhost:3000", True), ([], "http://127.0.0.1", True), ([], "https://[::1]:9", True),
    ([], "http://localhost.evil.example", False), ([], "null", False), ([], "http://evil.example", False),
    (["https://app.example/"], "https://app.example", True), (["https://app.example"], "http://localhost", False),
    (["*"], "null", True),
])
def test_allowed_origins_follow_the_cors_settings(origins, origin, allowed):
    check = security.CrossSiteCheck(lambda *a: None, origins)  # type: ignore[arg-type]
    assert check._allowed(origin) is allowed
