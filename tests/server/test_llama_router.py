"""llama-server's router-mode API that the web UI speaks (/props, /models, load/unload, /models/sse,
POST/DELETE /models and the rest the UI asks), and the UI's static files, over plain HTTP."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fastapi.testclient import TestClient

from nexa.config import Settings
from nexa.runtime import ModelManager
from nexa.server import pull_jobs
from nexa.server.app import create_app
from nexa.store import Store
from tests.conftest import ServerProcess
from tests.fixtures.fake_hub import FakeHub, nexa_env

TEXT = "test/qwen3-text:F32"
KEY = "ui-test-key"


def _feed(base_url: str, headers: dict[str, str] | None = None) -> tuple[list[dict], threading.Event]:
    """Read /models/sse in a thread; returns the records seen so far (a live list) and a 'connected' event."""
    events: list[dict] = []
    ready = threading.Event()

    def read() -> None:
        with httpx.stream("GET", base_url + "/models/sse", headers=headers, timeout=httpx.Timeout(5, read=120)) as r:
            ready.set()
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[len("data: "):]))

    threading.Thread(target=read, daemon=True).start()
    assert ready.wait(10)
    return events, ready


def _wait_for(predicate, timeout: float = 30.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# ---------------------------------------------------------------- the UI's files


def test_root_serves_the_ui_gzip_compressed(http: httpx.Client) -> None:
    response = http.get("/", headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["content-type"].startswith("text/html")
    assert "<!doctype html>" in response.text  # httpx decompressed it
    assert "apple-touch-startup-image" not in response.text  # the splash images are left out


def test_a_client_without_gzip_gets_the_files_decompressed(server: ServerProcess) -> None:
    raw = httpx.get(server.base_url + "/", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in raw.headers
    assert raw.content.startswith(b"<!--") and b"<!doctype html>" in raw.content


def test_hashed_bundles_are_cached_for_good_and_index_is_revalidated(http: httpx.Client) -> None:
    index = http.get("/")
    bundle = next(part.split('"')[0] for part in index.text.split('href="./')[1:] if part.startswith("_app/immutable"))
    assert http.get("/" + bundle).headers["cache-control"].endswith("immutable")
    assert index.headers["cache-control"] == "no-cache"
    assert http.head("/").status_code == 200


def test_the_ui_ships_with_its_licence_and_its_source(server: ServerProcess) -> None:
    static = Path(__file__).parents[2] / "src" / "nexa" / "server" / "ui" / "static"
    assert "MIT License" in (static / "LICENSE").read_text()
    assert "b11434" in (static / "SOURCE").read_text()
    assert not list(static.rglob("apple-splash-*"))
    assert gzip.decompress((static / "index.html.gz").read_bytes()).startswith(b"<!--")


def test_other_paths_keep_their_api_answers(http: httpx.Client) -> None:
    assert http.post("/", json={}).status_code == 405
    missing = http.get("/no-such-page")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"


# ---------------------------------------------------------------- /props


def test_props_says_router_mode(http: httpx.Client) -> None:
    props = http.get("/props", params={"autoload": "false"}).json()
    assert props["role"] == "router" and props["models_autoload"] is True
    assert "b11434" in props["build_info"] and props["cors_proxy_enabled"] is False


def test_props_of_a_model_comes_from_its_worker(http: httpx.Client) -> None:
    props = http.get("/props", params={"model": TEXT}).json()  # autoload: loads it
    assert props["default_generation_settings"]["n_ctx"] == 1024
    assert props["model_alias"] == TEXT and "chat_template" in props


def test_props_of_an_unloaded_model_without_autoload_is_a_400(http: httpx.Client) -> None:
    http.post("/models/unload", json={"model": "test/llama-text"})
    refused = http.get("/props", params={"model": "test/llama-text", "autoload": "false"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "model_not_loaded"


def test_props_of_an_unknown_model_is_a_404_with_the_pull_hint(http: httpx.Client) -> None:
    missing = http.get("/props", params={"model": "nobody/nothing"})
    assert missing.status_code == 404 and "nexa pull nobody/nothing" in missing.json()["error"]["message"]


# ---------------------------------------------------------------- /models, load, unload, feed


def test_models_lists_every_pulled_quant_with_state_and_modalities(http: httpx.Client) -> None:
    models = {m["id"]: m for m in http.get("/models").json()["data"]}
    assert models["test/vision-gemma3:F32"]["architecture"]["input_modalities"] == ["text", "image"]
    assert models["test/audio-qwen2a:F32"]["architecture"]["input_modalities"] == ["text", "audio"]
    assert models[TEXT]["in_cache"] is True and models[TEXT]["path"].endswith(".gguf")
    assert {m["status"]["value"] for m in models.values()} <= {"unloaded", "loading", "loaded"}
    cards = {m["id"]: m for m in http.get("/v1/models").json()["data"]}  # the list the UI reads has them too
    assert cards[TEXT]["status"]["value"] == models[TEXT]["status"]["value"]
    assert cards["test/vision-gemma3:F32"]["architecture"] == models["test/vision-gemma3:F32"]["architecture"]


def test_load_answers_at_once_and_the_feed_reports_loaded_then_unload_reports_unloaded(server, http) -> None:
    model = "test/llama-text:F32"
    http.post("/models/unload", json={"model": model})
    events, _ = _feed(server.base_url)
    assert http.post("/models/load", json={"model": model}).json() == {"success": True}
    _wait_for(lambda: {"model": model, "event": "model_status", "data": {"status": "loaded"}} in events)
    assert model in {m["id"] for m in http.get("/v1/ps").json()["data"]}
    assert next(m for m in http.get("/models").json()["data"] if m["id"] == model)["status"]["value"] == "loaded"
    assert http.post("/models/unload", json={"model": model}).json() == {"success": True}
    _wait_for(lambda: {"model": model, "event": "model_status", "data": {"status": "unloaded"}} in events)
    assert model not in {m["id"] for m in http.get("/v1/ps").json()["data"]}


def test_the_feed_starts_with_every_loaded_model(server, http) -> None:
    http.post("/v1/load", json={"model": TEXT})
    events, _ = _feed(server.base_url)
    _wait_for(lambda: {"model": TEXT, "event": "model_status", "data": {"status": "loaded"}} in events, timeout=5)


def test_load_and_unload_of_unknown_or_malformed_names(http: httpx.Client) -> None:
    assert http.post("/models/load", json={"model": "nobody/nothing"}).status_code == 404
    assert http.post("/models/load", json={"model": "../etc"}).status_code == 400
    assert http.post("/models/load", json={}).status_code == 400
    assert http.post("/models/unload", json={"model": "nobody/nothing"}).json() == {"success": True}


# ---------------------------------------------------------------- what else the UI asks


def test_slots_of_a_loaded_model_come_from_its_worker_and_others_have_none(http: httpx.Client) -> None:
    http.post("/v1/load", json={"model": TEXT})
    slots = http.get("/slots", params={"model": TEXT}).json()
    assert len(slots) == 2 and all(not s["is_processing"] for s in slots)
    assert http.get("/slots").json() == []


def test_server_tools_cors_proxy_and_resumable_streams_are_off_without_breaking_the_ui(http: httpx.Client) -> None:
    assert http.get("/tools").json() == []
    assert "error" in http.post("/tools", json={"tool": "file_glob_search", "params": {}}).json()
    assert http.get("/cors-proxy", params={"url": "http://example.com"}).status_code == 403
    assert http.post("/v1/streams/lookup", json={"conversation_ids": ["a"]}).json() == []
    assert http.delete("/v1/stream", params={"conv_id": "a"}).json() == {"success": True}


# ---------------------------------------------------------------- POST and DELETE /models


@pytest.mark.parametrize("name", ["https://evil.example/org/repo", "org/repo:../../x", "/etc/passwd", "org", "a/b/c",
                                  "org/repo:Q4 K", "org/repo\n"])
def test_pull_refuses_what_is_not_a_hub_repo_name(http: httpx.Client, name: str) -> None:
    refused = http.post("/models", json={"model": name})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "model"


@pytest.fixture(scope="module")
def hub_server(tmp_path_factory: pytest.TempPathFactory, fake_hub: FakeHub) -> Iterator[ServerProcess]:
    """A server with an empty store whose pulls go to the fake Hub."""
    root = tmp_path_factory.mktemp("ui-pull")
    server = ServerProcess(root / "data", env=nexa_env(fake_hub, root / "data", root / "hf-home"))
    yield server
    server.stop()


def test_pull_reports_progress_on_the_feed_then_the_model_is_listed_and_delete_removes_it(hub_server) -> None:
    base = hub_server.base_url
    events, _ = _feed(base)
    assert httpx.post(base + "/models", json={"model": "test-org/Tiny-GGUF:Q8_0"}).json() == {"success": True}
    _wait_for(lambda: any(e["event"] in ("download_finished", "download_failed") for e in events))
    mine = [e for e in events if e["model"] == "test-org/Tiny-GGUF:Q8_0"]
    progress = [e for e in mine if e["event"] == "download_progress"]
    assert progress and progress[-1]["data"]["progress"]["tiny-Q8_0.gguf"]["done"] == \
        progress[-1]["data"]["progress"]["tiny-Q8_0.gguf"]["total"]
    assert [e["event"] for e in mine][-2:] == ["download_finished", "models_reload"]
    assert "test-org/Tiny-GGUF:Q8_0" in {m["id"] for m in httpx.get(base + "/models").json()["data"]}

    assert httpx.delete(base + "/models", params={"model": "test-org/Tiny-GGUF"}).json() == {"success": True}
    _wait_for(lambda: {"model": "test-org/Tiny-GGUF:Q8_0", "event": "model_remove"} in events)
    assert httpx.get(base + "/models").json()["data"] == []
    assert httpx.delete(base + "/models", params={"model": "test-org/Tiny-GGUF"}).status_code == 404


def test_a_pull_that_fails_says_why_on_the_feed(hub_server) -> None:
    events, _ = _feed(hub_server.base_url)
    assert httpx.post(hub_server.base_url + "/models", json={"model": "test-org/No-Such-GGUF"}).json()["success"]
    _wait_for(lambda: any(e["event"] == "download_failed" for e in events))
    failed = next(e for e in events if e["event"] == "download_failed")
    assert failed["model"] == "test-org/No-Such-GGUF" and failed["data"]["error"]


def test_a_second_pull_of_a_repo_being_pulled_is_a_409(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    monkeypatch.setattr(pull_jobs, "pull_named", lambda store, ref, events: release.wait(10))
    app = create_app(ModelManager(Store(tmp_path), Settings(datadir=tmp_path)))
    with TestClient(app, base_url="http://localhost") as client:
        first = client.post("/models", json={"model": "test-org/Tiny-GGUF"})
        second = client.post("/models", json={"model": "test-org/tiny-gguf:Q8_0"})
        release.set()
    assert first.json() == {"success": True}
    assert second.status_code == 409 and second.json()["error"]["code"] == "pull_in_progress"


# ---------------------------------------------------------------- auth and --no-ui


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory, session_store: Store) -> Iterator[ServerProcess]:
    server = ServerProcess(session_store.root, "--api-key", KEY)
    yield server
    server.stop()


def test_with_an_api_key_the_ui_files_are_public_and_every_api_call_needs_the_key(keyed_server) -> None:
    base = keyed_server.base_url
    assert httpx.get(base + "/").status_code == 200
    assert httpx.get(base + "/favicon.svg").status_code == 200
    for method, path in [("GET", "/props"), ("GET", "/models"), ("GET", "/v1/models"), ("GET", "/models/sse"),
                         ("POST", "/models/load"), ("POST", "/models/unload"), ("POST", "/models"),
                         ("DELETE", "/models?model=a/b"), ("GET", "/slots"), ("GET", "/tools")]:
        refused = httpx.request(method, base + path, json={"model": "a/b"} if method == "POST" else None)
        assert refused.status_code == 401, (method, path)
    authorized = {"Authorization": f"Bearer {KEY}"}  # what the UI's API-key setting sends
    assert httpx.get(base + "/props", headers=authorized).json()["role"] == "router"
    assert httpx.get(base + "/models", headers=authorized).status_code == 200
    events, _ = _feed(base, headers=authorized)
    assert httpx.post(base + "/models/load", json={"model": TEXT}, headers=authorized).status_code == 200
    _wait_for(lambda: any(e["model"] == TEXT and e["data"]["status"] == "loaded" for e in events))


def test_no_ui_turns_the_files_off(tmp_path: Path, session_store: Store) -> None:
    server = ServerProcess(session_store.root, "--no-ui")
    try:
        assert httpx.get(server.base_url + "/").status_code == 404
        assert httpx.get(server.base_url + "/props").json()["role"] == "router"  # the API stays
    finally:
        server.stop()
    assert "Chat in the browser" not in server.output


def test_serve_prints_the_ui_url(session_store: Store) -> None:
    server = ServerProcess(session_store.root)
    server.stop()
    assert f"Chat in the browser: http://127.0.0.1:{server.port}/" in server.output
