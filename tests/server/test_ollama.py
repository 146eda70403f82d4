"""Ollama's API on nexa's port, checked with the official `ollama` Python client."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator

import httpx
import ollama
import pytest
from PIL import Image

from tests.conftest import ServerProcess
from tests.fixtures.fake_hub import FakeHub, nexa_env

TEXT = "test/qwen3-text"
HELLO = "Hello from a scripted model."
ASK = [{"role": "user", "content": "Say hello."}]
GET_WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="session")
def lama(server: ServerProcess) -> ollama.Client:
    return ollama.Client(host=server.base_url, timeout=60)


def test_version_is_recent_enough_for_ollama_clients(lama):
    major, minor, patch = (int(p) for p in lama._request_raw("GET", "/api/version").json()["version"].split("."))
    assert (major, minor, patch) >= (0, 6, 4)


def test_chat_without_streaming_answers_with_counts_and_durations(lama):
    reply = lama.chat(model=TEXT, messages=ASK, stream=False)
    assert reply.message.role == "assistant" and reply.message.content == HELLO
    assert reply.done and reply.done_reason == "stop"
    assert reply.model == TEXT
    assert reply.prompt_eval_count > 0 and reply.eval_count > 0
    assert reply.total_duration >= reply.load_duration >= 0 and reply.eval_duration > 0


def test_chat_streams_ndjson_chunks_ending_with_done(lama, http):
    chunks = list(lama.chat(model=TEXT, messages=ASK, stream=True))
    assert "".join(c.message.content or "" for c in chunks) == HELLO
    assert [c.done for c in chunks].count(True) == 1 and chunks[-1].done
    assert chunks[-1].done_reason == "stop" and chunks[-1].eval_count > 0
    with http.stream("POST", "/api/chat", json={"model": TEXT, "messages": ASK}) as response:  # stream is the default
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert lines[-1]["done"] is True and len(lines) > 1


def test_hf_co_names_and_latest_mean_the_default_quant(lama):
    for name in ("hf.co/test/qwen3-text", "test/qwen3-text:latest", "hf.co/test/qwen3-text:f32"):
        reply = lama.chat(model=name, messages=ASK, stream=False, options={"num_predict": 2})
        assert reply.model == name and reply.done_reason == "length"


def test_a_tool_call_comes_back_with_arguments_as_an_object(lama):
    reply = lama.chat(model="test/qwen3-tool", messages=[{"role": "user", "content": "Weather in Paris?"}],
                      tools=[GET_WEATHER], stream=False)
    (call,) = reply.message.tool_calls
    assert call.function.name == "get_weather" and call.function.arguments == {"city": "Paris"}
    streamed = list(lama.chat(model="test/qwen3-tool", messages=[{"role": "user", "content": "Weather in Paris?"}],
                              tools=[GET_WEATHER], stream=True))
    calls = [call for chunk in streamed for call in chunk.message.tool_calls or []]
    assert [(c.function.name, c.function.arguments) for c in calls] == [("get_weather", {"city": "Paris"})]


def test_tool_results_go_back_as_tool_messages(lama):
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "tool_name": "get_weather", "content": "sunny, 22 C"},
    ]
    reply = lama.chat(model="test/qwen3-tool", messages=history, tools=[GET_WEATHER], stream=False)
    assert reply.done


def test_think_puts_the_reasoning_in_message_thinking(lama):
    reply = lama.chat(model="test/qwen3-think", messages=ASK, think=True, stream=False)
    assert reply.message.thinking and "<think>" not in reply.message.content
    assert reply.message.content == "It is sunny in Paris."
    chunks = list(lama.chat(model="test/qwen3-think", messages=ASK, think=True, stream=True))
    assert "".join(c.message.thinking or "" for c in chunks).strip() == reply.message.thinking.strip()


def test_format_json_and_options_reach_the_engine(lama):
    reply = lama.chat(model="test/qwen3-random", messages=ASK, format="json", stream=False,
                      options={"num_predict": 8, "temperature": 0, "seed": 1, "top_k": 5, "num_ctx": 99999})
    assert reply.done and reply.eval_count <= 8
    assert reply.message.content.lstrip().startswith("{")


def test_generate_templated_raw_and_streamed(lama):
    reply = lama.generate(model=TEXT, prompt="Say hello.", system="Be brief.", stream=False)
    assert reply.response == HELLO and reply.done and reply.eval_count > 0
    chunks = list(lama.generate(model=TEXT, prompt="Say hello.", stream=True))
    assert "".join(c.response for c in chunks) == HELLO and chunks[-1].done
    raw = lama.generate(model=TEXT, prompt="Hello", raw=True, stream=False, options={"num_predict": 3})
    assert raw.done and raw.eval_count <= 3


def test_an_empty_prompt_loads_and_keep_alive_zero_unloads(lama):
    loaded = lama.generate(model="test/llama-text", prompt="", keep_alive="10m")
    assert loaded.done and loaded.done_reason == "load"
    running = {m.model: m for m in lama.ps().models}
    assert running["test/llama-text:F32"].context_length == 1024
    assert running["test/llama-text:F32"].size_vram == 0 and running["test/llama-text:F32"].expires_at
    lama.chat(model="test/llama-text", messages=[], keep_alive=-1)
    assert {m.model: m for m in lama.ps().models}["test/llama-text:F32"].expires_at.year == 2318  # Ollama's forever
    lama.chat(model="test/llama-text", messages=[], keep_alive=1e15)
    assert {m.model: m for m in lama.ps().models}["test/llama-text:F32"].expires_at.year == 2318
    unloaded = lama.generate(model="test/llama-text", prompt="", keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert "test/llama-text:F32" not in {m.model for m in lama.ps().models}


def test_images_go_through_the_media_policy(lama):
    out = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(out, "PNG")
    image = base64.b64encode(out.getvalue()).decode()
    reply = lama.chat(model="test/vision-gemma3", stream=False,
                      messages=[{"role": "user", "content": "What is this?", "images": [image]}])
    assert reply.message.content == HELLO
    with pytest.raises(ollama.ResponseError) as refused:
        lama.chat(model=TEXT, stream=False, messages=[{"role": "user", "content": "What?", "images": [image]}])
    assert refused.value.status_code == 400


def test_embed_and_the_older_embeddings(lama):
    reply = lama.embed(model="test/bert-embed", input=["one text", "another text"])
    assert len(reply.embeddings) == 2 and len(reply.embeddings[0]) > 0
    assert sum(x * x for x in reply.embeddings[0]) == pytest.approx(1.0, rel=1e-3)
    single = lama.embeddings(model="test/bert-embed", prompt="one text")
    assert single.embedding == pytest.approx(reply.embeddings[0], abs=1e-5)


def test_list_and_show(lama):
    listed = {m.model: m for m in lama.list().models}
    card = listed["test/qwen3-text:F32"]
    assert card.size > 0 and card.digest and card.details.format == "gguf" and card.details.family == "qwen3"
    assert card.details.quantization_level == "F32"
    shown = lama.show("test/qwen3-tool")
    assert {"completion", "tools", "thinking"} <= set(shown.capabilities)
    assert shown.modelinfo["general.architecture"] == "qwen3" and "qwen3.context_length" in shown.modelinfo
    assert shown.template and shown.details.family == "qwen3"
    assert lama.show("test/bert-embed").capabilities == ["embedding"]
    assert "vision" in lama.show("test/vision-gemma3").capabilities


@pytest.mark.parametrize("call, status", [
    (lambda c: c.chat(model="test/nope", messages=ASK), 404),
    (lambda c: c.chat(model="llama3", messages=ASK, stream=False), 404),
    (lambda c: c.show("test/nope"), 404),
    (lambda c: c.delete("test/nope"), 404),
    (lambda c: c.chat(model=TEXT, messages=ASK, stream=False, options={"temperature": 9}), 400),
    (lambda c: c.chat(model=TEXT, messages=ASK, stream=False, keep_alive="soon"), 400),
    (lambda c: c.chat(model="test/bert-embed", messages=ASK, stream=False), 404),  # no chat model by that name
    (lambda c: c.embed(model=TEXT, input="x"), 404),
    (lambda c: c.generate(model=TEXT, prompt="def f(", suffix="return 1", stream=False), 400),
])
def test_bad_input_is_an_ollama_error(lama, call, status):
    with pytest.raises(ollama.ResponseError) as refused:
        call(lama)
    assert refused.value.status_code == status
    assert refused.value.error and not refused.value.error.startswith("{")


def test_not_found_says_how_to_pull(lama, http):
    response = http.post("/api/chat", json={"model": "test/nope", "messages": ASK})
    assert response.status_code == 404
    assert set(response.json()) == {"error"}
    assert "try pulling it first" in response.json()["error"] and "nexa pull test/nope" in response.json()["error"]
    bad = http.post("/api/chat", json={"model": TEXT, "messages": [{"role": "robot", "content": "x"}]})
    assert bad.status_code == 400 and set(bad.json()) == {"error"} and "role" in bad.json()["error"]


# ---------------------------------------------------------------- pull and delete, against the fake hub


@pytest.fixture(scope="module")
def hub_server(fake_hub: FakeHub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("ollama-pull")
    process = ServerProcess(root / "data", env=nexa_env(fake_hub, root / "data", root / "hf-home"))
    yield process
    process.stop()


def test_pull_streams_progress_then_success_and_delete_removes(hub_server, fake_hub):
    lama = ollama.Client(host=hub_server.base_url, timeout=60)
    lines = list(lama.pull("hf.co/test-org/Tiny-GGUF", stream=True))
    assert lines[-1].status == "success"
    files = [line for line in lines if line.digest]
    assert files and files[-1].completed == files[-1].total > 0 and files[-1].digest.startswith("sha256:")
    assert "test-org/Tiny-GGUF:Q4_K_M" in {m.model for m in lama.list().models}
    assert lama.chat(model="test-org/Tiny-GGUF", messages=ASK, stream=False).message.content == HELLO
    asked = len(fake_hub.seen)
    assert [line.status for line in lama.pull("test-org/Tiny-GGUF:latest", stream=True)] == ["success"]  # already there
    assert len(fake_hub.seen) == asked
    assert lama.pull("test-org/Tiny-GGUF:Q8_0", stream=False).status == "success"
    assert lama.delete("test-org/Tiny-GGUF:Q8_0").status == "success"
    assert {m.model for m in lama.list().models} == {"test-org/Tiny-GGUF:Q4_K_M"}
    assert lama.delete("test-org/Tiny-GGUF").status == "success"  # loaded: unloaded first
    assert lama.list().models == [] and lama.ps().models == []


def test_pull_of_a_missing_repo_is_a_404(hub_server):
    lama = ollama.Client(host=hub_server.base_url, timeout=60)
    with pytest.raises(ollama.ResponseError) as refused:
        lama.pull("test-org/Missing-GGUF", stream=False)
    assert refused.value.status_code == 404
    with pytest.raises(ollama.ResponseError, match="does not exist"):
        list(lama.pull("test-org/Missing-GGUF", stream=True))
    response = httpx.post(hub_server.base_url + "/api/pull", json={"model": "a/b/c"})
    assert response.status_code == 400 and set(response.json()) == {"error"}


def test_a_bare_or_latest_name_picks_nexa_pulls_default_quant(hub_server):
    """With Q8_0 pulled first and Q4_K_M after, a name without a tag (or with :latest) means Q4_K_M, as for `nexa pull`."""
    lama = ollama.Client(host=hub_server.base_url, timeout=60)
    for quant in ("Q8_0", "Q4_K_M"):
        assert lama.pull(f"test-org/Tiny-GGUF:{quant}", stream=False).status == "success"
    try:
        for name in ("test-org/Tiny-GGUF", "test-org/Tiny-GGUF:latest", "hf.co/test-org/Tiny-GGUF:latest"):
            assert lama.chat(model=name, messages=ASK, stream=False, keep_alive=0).message.content == HELLO
            assert lama.show(name).details.quantization_level == "Q4_K_M"
        lama.chat(model="test-org/Tiny-GGUF:latest", messages=ASK, stream=False)
        assert [m.model for m in lama.ps().models] == ["test-org/Tiny-GGUF:Q4_K_M"]
    finally:
        assert lama.delete("test-org/Tiny-GGUF").status == "success"



def test_a_pull_of_a_name_the_hub_refuses_is_a_400_naming_the_rules(hub_server):
    """schemathesis: {"model": "QL./0"} was a 500 (an uncaught HFValidationError)."""
    for stream in (False, True):
        answer = httpx.post(hub_server.base_url + "/api/pull", json={"model": "QL./0", "stream": stream}, timeout=30)
        if stream:
            assert answer.status_code == 200 and "not a Hugging Face repo id" in answer.text.splitlines()[-1]
        else:
            assert answer.status_code == 400 and "'--' or '..'" in answer.json()["error"]


def test_an_unreachable_hub_is_a_502_the_schema_declares(tmp_path):
    closed = ServerProcess(tmp_path / "data", env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf")})
    try:
        answer = httpx.post(closed.base_url + "/api/pull", json={"model": "test-org/Tiny-GGUF", "stream": False},
                            timeout=60)
        assert answer.status_code == 502 and "cannot reach" in answer.json()["error"]
        declared = httpx.get(closed.base_url + "/openapi.json").json()["paths"]["/api/pull"]["post"]["responses"]
        assert "502" in declared
    finally:
        closed.stop()
