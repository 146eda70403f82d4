"""/openapi.json says what the server really takes and sends: schemathesis, with all its checks and their
default expectations, against a real `nexa serve`. A request the schema calls valid is never refused as bad
input (400); what depends on the server's state (an unknown model, a response not stored) is a 404.

Bounded: a few examples per operation and a fixed seed, so a run takes a minute and is the same each time.
Left out: /api/pull (it streams a pull from Hugging Face) and /models/sse (an event feed that never ends).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nexa.store import ModelRef, Store
from nexa.store.importer import import_local
from tests.conftest import TINY, ServerProcess, import_tiny

MODELS = ("test/bert-embed", "test/bert-rerank")  # and a chat model with a long context (below)
EXCLUDED = ("/api/pull", "/models/sse")
# POST /models answers at once and pulls in the background: it must not reach the real Hub.
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
# A prompt longer than the model's context is a 400 (context_length_exceeded, which agents read to compact their
# conversation): how long a context is depends on the model and the server's settings, so the chat model is one
# trained for a long context, given one that the conversations schemathesis writes fit in (its KV cache: 16 MiB).
ENGINE = ("--parallel", "1", "--ctx", "32768")
CHAT_MODEL = "test/qwen3-long"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path, long_context_model: Path) -> Iterator[ServerProcess]:
    store = Store(tmp_path_factory.mktemp("openapi"))
    for name in MODELS:
        import_tiny(store, tiny_dir, name, *TINY[name])
    import_local(store, ModelRef.parse(CHAT_MODEL), long_context_model, None)
    # Quiet logs: the server's output goes to a pipe nobody reads until it stops.
    process = ServerProcess(store.root, env={"NEXA_LOG_LEVEL": "warning", **OFFLINE}, engine=ENGINE)
    yield process
    process.stop()


def test_every_response_matches_the_openapi_document(server, tmp_path):
    excluded = [arg for path in EXCLUDED for arg in ("--exclude-path", path)]
    result = subprocess.run(
        [str(Path(sys.executable).parent / "st"), "--no-color", "run",
         f"{server.base_url}/openapi.json", "--checks", "all", "--max-examples", "5", "--seed", "1",
         "--workers", "1", "--request-timeout", "20", "--max-failures", "50", *excluded],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,  # its cache stays out of the checkout
    )
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-2000:]


def test_errors_are_declared_in_their_dialects_shape_and_422_never(server):
    document = httpx.get(server.base_url + "/openapi.json", timeout=30).json()
    schemas = {"/v1/chat/completions": "openai", "/v1/messages": "anthropic", "/api/chat": "ollama"}
    for path, dialect in schemas.items():
        responses = document["paths"][path]["post"]["responses"]
        assert {"400", "401", "404", "413", "503"} <= set(responses) and "422" not in responses
        assert dialect in responses["400"]["content"]["application/json"]["schema"]["$ref"]
        assert responses["503"]["headers"]["Retry-After"]["required"]
    assert all("422" not in operation["responses"] for item in document["paths"].values() for operation in item.values())


def test_a_wrong_method_is_a_405_naming_every_method_the_path_takes(server):
    response = httpx.request("PUT", server.base_url + "/v1/responses/resp_1", timeout=30)
    assert response.status_code == 405 and response.headers["allow"] == "DELETE, GET"
    response = httpx.request("TRACE", server.base_url + "/api/tags", timeout=30)
    assert response.status_code == 405 and response.headers["allow"] == "GET" and "TRACE" in response.json()["error"]
