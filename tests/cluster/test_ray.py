"""`nexa serve --ray` on a real multi-node Ray cluster on this machine (ray.cluster_utils.Cluster).

Nodes carry custom resources so placement is checked, not assumed: `node_b` pins one model to one node,
and each `slot` holds one replica of the replicated model, so its two replicas sit on node_a and node_b
and a replacement can only go to node_c, which the node-failure test adds."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from nexa.store import Store
from nexa.hub.starter import STARTER_NAME, fetch_starter
from tests.conftest import TINY, ServerProcess, import_tiny, cache_dir, worker_pids
from tests.fixtures.media_samples import wav_bytes
from tests.fixtures.tiny_models import make_chat_llm

ray = pytest.importorskip("ray", reason="the Ray tests need pip install -e '.[ray]'")
from ray.cluster_utils import Cluster  # noqa: E402

pytestmark = pytest.mark.ray

KEY = "ray-test-key"
PINNED = "test/qwen3-text"  # on node_b only, never scaled to zero
REPLICATED = "test/loop-pair"  # exactly two replicas, one per `slot`; it answers until max_tokens
ELASTIC = "test/llama-text"  # the default: one replica, gone after the keep-alive, back on the next request
SCALING = "test/loop-scale"  # one slot, one replica, a second one while requests wait for that slot
AUDIO = "test/audio-qwen2a"  # speech to text: its engine requests are multipart forms, not JSON
LONG = STARTER_NAME  # a real model (SmolLM2-135M): 4,000 tokens take it a minute here, time to leave mid-way
MARK = "NEXA_RAY_TEST_CLUSTER"  # set in every process of the cluster, so its engine workers can be found
MAX_WAITING = 10  # --max-waiting: above what any test here leaves waiting on purpose, but for the one about it


def until(check: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    mark = str(tmp_path_factory.mktemp("ray-mark"))
    os.environ[MARK] = mark  # the raylets inherit it, and through them every replica and its worker
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    nodes.node_a = nodes.add_node(num_cpus=1, resources={"slot": 1})
    nodes.node_b = nodes.add_node(num_cpus=1, resources={"slot": 1, "node_b": 1})
    nodes.mark = mark
    yield nodes
    nodes.shutdown()
    del os.environ[MARK]


@pytest.fixture(scope="module")
def ray_store(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> Store:
    store = Store(tmp_path_factory.mktemp("ray-store"))
    for name in (PINNED, ELASTIC, AUDIO):
        import_tiny(store, tiny_dir, name, *TINY[name])
    files = tmp_path_factory.mktemp("ray-models")
    make_chat_llm(str(files / "loop.gguf"), script=["Tick", " tock"], loop=True, n_ctx=65536)
    import_tiny(store, files, REPLICATED, ["loop.gguf"], None)
    import_tiny(store, files, SCALING, ["loop.gguf"], None)
    fetch_starter(store, cache_dir() / "wheels")
    return store


@pytest.fixture(scope="module")
def ray_server(cluster: Cluster, ray_store: Store) -> Iterator[ServerProcess]:
    server = ServerProcess(
        ray_store.root, "--ray", cluster.address, "--api-key", KEY, "--keepalive", "4", "--log-level", "info",
        "--max-waiting", str(MAX_WAITING),
        "--model-option", f"{PINNED}:resource.node_b=1,num_cpus=0,min_replicas=1",
        "--model-option", f"{LONG}:num_cpus=0,ctx=8192,parallel=1",
        "--model-option", f"{REPLICATED}:replicas=2,resource.slot=1,num_cpus=0,ctx=32768",
        "--model-option", f"{ELASTIC}:num_cpus=0",
        "--model-option", f"{AUDIO}:num_cpus=0,ctx=4096",
        "--model-option", f"{SCALING}:min_replicas=1,max_replicas=2,parallel=1,num_cpus=0,ctx=32768",
        startup_timeout=120,
    )
    yield server
    server.stop(timeout=60)


@pytest.fixture(scope="module")
def api(ray_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ray_server.base_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def chat_client(ray_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=ray_server.base_url + "/v1", api_key=KEY, max_retries=0, timeout=120)


def chat(client: openai.OpenAI, model: str, max_tokens: int = 16) -> str:
    answer = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=max_tokens)
    assert answer.model == model
    return answer.choices[0].message.content or ""


def replicas(api: httpx.Client, model: str) -> list[dict]:
    for running in api.get("/v1/ps").json()["data"]:
        if running["id"].startswith(model + ":"):
            return running["replicas"]
    return []


def alive(api: httpx.Client, model: str) -> list[dict]:
    return [r for r in replicas(api, model) if r["state"] == "ALIVE"]


def answered_by(api: httpx.Client, model: str) -> dict[str, float]:
    """Requests per replica of `model`, from /metrics' replica labels."""
    pattern = re.compile(r'nexa_replica_requests_total\{model="' + re.escape(model) + r':[^"]*",node="[^"]*",replica="([^"]+)"\} (\S+)')
    return {m.group(1): float(m.group(2)) for m in pattern.finditer(api.get("/metrics").text)}


def running_model(api: httpx.Client, model: str) -> dict:
    (running,) = [m for m in api.get("/v1/ps").json()["data"] if m["id"].startswith(model + ":")]
    return running


class Streams:
    """`n` streamed chat requests of `body` at once, held open for the `with` block and closed after it (the
    engine stops each generation then). Those waiting for a slot close once they have one."""

    def __init__(self, api: httpx.Client, body: dict, n: int):
        self.started = threading.Semaphore(0)  # released once per stream, at its first event
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._stream, args=(api, body)) for _ in range(n)]

    def _stream(self, api: httpx.Client, body: dict) -> None:
        with api.stream("POST", "/v1/chat/completions", json=body) as answer:
            assert answer.status_code == 200, answer.read()
            for line in answer.iter_lines():
                if line.startswith("data: {"):
                    self.started.release()
                    self._stop.wait()
                    break

    def __enter__(self) -> Streams:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(120)


def test_a_model_pinned_to_one_node_is_served_through_the_ingress_on_another(
    cluster: Cluster, api: httpx.Client, chat_client: openai.OpenAI
) -> None:
    assert chat(chat_client, PINNED) == "Hello from a scripted model."
    (replica,) = alive(api, PINNED)
    assert replica["node"] == cluster.node_b.node_id
    ingress_node = cluster.head_node.node_id
    assert replica["node"] != ingress_node


def test_a_stream_is_relayed_event_by_event(chat_client: openai.OpenAI) -> None:
    stream = chat_client.chat.completions.create(
        model=PINNED, messages=[{"role": "user", "content": "hi"}], stream=True, max_tokens=16
    )
    deltas = [chunk.choices[0].delta.content for chunk in stream if chunk.choices and chunk.choices[0].delta.content]
    assert len(deltas) > 3
    assert "".join(deltas) == "Hello from a scripted model."


def test_a_recording_is_transcribed_through_a_replica(chat_client: openai.OpenAI) -> None:
    # 70 s: 3 pieces in 2 engine requests made at once from one client request, each a multipart form
    # relayed with its content type (the second used to hang: Serve tracked both calls by one request id).
    answer = chat_client.audio.transcriptions.create(model=AUDIO, file=("talk.wav", wav_bytes(70.0)))
    assert answer.text == "Hello from a scripted model. Hello from a scripted model."
    assert answer.usage.input_tokens > 3 * 750


def test_a_client_that_leaves_frees_the_replicas_slot(api: httpx.Client) -> None:
    """LONG has one replica with one slot: the next request is answered only once the engine stopped."""
    body = {"model": LONG, "messages": [{"role": "user", "content": "Tell a long story."}], "stream": True,
            "max_tokens": 4000, "ignore_eos": True}
    with api.stream("POST", "/v1/chat/completions", json=body) as stream:
        events = 0
        for line in stream.iter_lines():
            events += line.startswith("data: {")
            if events == 20:
                break
        assert events == 20, line
    left = time.monotonic()
    after = api.post("/v1/chat/completions", json={**body, "stream": False, "max_tokens": 4})
    waited = time.monotonic() - left
    assert after.status_code == 200 and after.json()["usage"]["completion_tokens"] == 4
    assert waited < 10, f"the next request waited {waited:.1f} s: the left generation kept the slot"
    print(f"the next request was answered {waited:.2f} s after the client left")


def test_requests_beyond_max_waiting_get_a_503_in_each_dialects_shape(api: httpx.Client) -> None:
    """LONG has one replica with one slot: one request runs, --max-waiting more wait (on the replica and in
    Serve's queue), and the next is refused at once, in the shape of the API it came in on."""
    chat_body = {"model": LONG, "messages": [{"role": "user", "content": "Tell a long story."}], "max_tokens": 2}
    assert api.post("/v1/chat/completions", json=chat_body).status_code == 200  # its replica is up
    with Streams(api, {**chat_body, "stream": True, "max_tokens": 4000, "ignore_eos": True}, 1 + MAX_WAITING) as streams:
        assert streams.started.acquire(timeout=60)
        until(lambda: running_model(api, LONG)["queued"] == MAX_WAITING, 30, f"{MAX_WAITING} requests waiting")
        openai_refusal = api.post("/v1/chat/completions", json=chat_body)
        assert openai_refusal.status_code == 503 and openai_refusal.headers["Retry-After"] == "5", openai_refusal.text
        assert openai_refusal.json()["error"]["code"] == "queue_full"
        assert f"--max-waiting {MAX_WAITING}" in openai_refusal.json()["error"]["message"]
        claude = api.post("/v1/messages", json=chat_body)
        assert claude.status_code == 503 and claude.headers["Retry-After"] == "5"
        assert claude.json()["type"] == "error" and claude.json()["error"]["type"] == "overloaded_error"
        ollama_refusal = api.post("/api/chat", json={"model": LONG, "messages": chat_body["messages"], "stream": False})
        assert ollama_refusal.status_code == 503 and set(ollama_refusal.json()) == {"error"}
    assert api.post("/v1/chat/completions", json=chat_body).status_code == 200  # served again once they are gone


def test_two_replicas_both_take_traffic(cluster: Cluster, api: httpx.Client, chat_client: openai.OpenAI) -> None:
    threads = [threading.Thread(target=chat, args=(chat_client, REPLICATED, 24)) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    placed = alive(api, REPLICATED)
    assert {r["node"] for r in placed} == {cluster.node_a.node_id, cluster.node_b.node_id}
    counts = answered_by(api, REPLICATED)
    assert len(counts) == 2 and all(count >= 1 for count in counts.values()), counts
    assert sum(counts.values()) >= 12


def decisions(api: httpx.Client, model: str) -> dict[str, float]:
    """The router's decisions for `model` so far, by reason, from /metrics."""
    pattern = re.compile(r'nexa_route_decisions_total\{model="' + re.escape(model) + r':[^"]*",reason="([^"]+)"\} (\S+)')
    return {m.group(1): float(m.group(2)) for m in pattern.finditer(api.get("/metrics").text)}


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


class Conversation:
    """An agent's conversation: a long system prompt of its own, and every turn re-sends all before it."""

    def __init__(self, name: str, session: str | None = None):
        self.messages = [{"role": "system", "content": f"You are agent {name}. " + f"Rule {name}: check twice. " * 60}]
        self.session = session
        self.cached: list[int] = []  # the engine's cached prompt tokens, per turn
        self.prompt: list[int] = []

    def turn(self, api: httpx.Client, n: int, **extra: object) -> httpx.Response:
        self.messages.append({"role": "user", "content": f"Turn {n}: go on with the task."})
        headers = {"X-Session-Id": self.session} if self.session else {}
        answer = api.post("/v1/chat/completions", headers=headers, json={
            "model": REPLICATED, "messages": self.messages, "max_tokens": 6, **extra})
        assert answer.status_code == 200, answer.text
        usage = answer.json()["usage"]
        self.cached.append(usage["prompt_tokens_details"]["cached_tokens"])
        self.prompt.append(usage["prompt_tokens"])
        self.messages.append({"role": "assistant", "content": answer.json()["choices"][0]["message"]["content"] or "ok"})
        return answer


def one_request_went_to(api: httpx.Client, before: dict[str, float]) -> str:
    changed = delta(answered_by(api, REPLICATED), before)
    assert list(changed.values()) == [1], changed
    return next(iter(changed))


def test_each_turn_of_a_conversation_goes_to_the_replica_that_holds_its_prompt(
    api: httpx.Client, chat_client: openai.OpenAI
) -> None:
    """8 conversations one request at a time: every turn's replica is known from /metrics."""
    chat(chat_client, REPLICATED, 2)  # both replicas up
    assert [r["load"] for r in alive(api, REPLICATED)] == [0, 0], "every earlier request has ended"
    conversations = [Conversation(f"seq-{i}") for i in range(8)]
    before_decisions = decisions(api, REPLICATED)
    homes: dict[int, str] = {}
    stayed = 0
    for n in range(5):
        for i, conversation in enumerate(conversations):
            before = answered_by(api, REPLICATED)
            conversation.turn(api, n)
            replica = one_request_went_to(api, before)
            homes.setdefault(i, replica)
            stayed += n > 0 and replica == homes[i]
    assert stayed >= 0.9 * 32, f"{stayed} of 32 later turns stayed on their first replica"
    assert len(set(homes.values())) == 2, "new conversations should spread over both replicas"
    made = delta(decisions(api, REPLICATED), before_decisions)
    assert made.get("fallback") == 8 and made.get("prefix", 0) >= 29, made
    assert_prompts_were_reused(conversations)


def assert_prompts_were_reused(conversations: list[Conversation]) -> None:
    """The engine's own count: turns 2..5 find all but the newest messages cached."""
    reused = [c.cached[n] / c.prompt[n] for c in conversations for n in range(1, 5)]
    assert sum(share >= 0.8 for share in reused) >= 0.9 * len(reused), [round(r, 2) for r in reused]
    print(f"turns 2..5 found {sum(reused) / len(reused):.0%} of their prompt cached (turn 1: "
          f"{sum(c.cached[0] / c.prompt[0] for c in conversations) / len(conversations):.0%})")


def test_concurrent_conversations_keep_their_replicas(api: httpx.Client) -> None:
    conversations = [Conversation(f"par-{i}") for i in range(8)]
    before_decisions = decisions(api, REPLICATED)

    def run(conversation: Conversation) -> None:
        for n in range(5):
            conversation.turn(api, n)

    threads = [threading.Thread(target=run, args=(c,)) for c in conversations]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert all(len(c.cached) == 5 for c in conversations)
    made = delta(decisions(api, REPLICATED), before_decisions)
    assert sum(made.values()) == 40 and made.get("prefix", 0) >= 0.9 * 32, made
    assert_prompts_were_reused(conversations)


def test_a_burst_of_new_conversations_spreads_over_both_replicas(api: httpx.Client, chat_client: openai.OpenAI) -> None:
    """Sent at once, before any has reached its replica: the router counts its own choices as load, so the
    burst does not pile onto the replica that looked idle when it began."""
    chat(chat_client, REPLICATED, 2)  # both replicas up
    until(lambda: [r["load"] for r in alive(api, REPLICATED)] == [0, 0], 30, "every earlier request to end")
    before, before_decisions = answered_by(api, REPLICATED), decisions(api, REPLICATED)
    gate = threading.Barrier(8)

    def run(i: int) -> None:
        gate.wait()
        Conversation(f"burst-{i}").turn(api, 0, max_tokens=64)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    went = delta(answered_by(api, REPLICATED), before)
    print(f"the burst went {sorted(went.values())} over the two replicas")
    assert sum(went.values()) == 8 and len(went) == 2 and min(went.values()) >= 3, went
    assert delta(decisions(api, REPLICATED), before_decisions) == {"fallback": 8}


def test_a_long_queue_sends_new_sessions_and_its_own_overflow_to_the_other_replica(api: httpx.Client) -> None:
    hog = Conversation("hog", session="hog-session")
    before = answered_by(api, REPLICATED)
    hog.turn(api, 0)
    busy = one_request_went_to(api, before)
    body = {"model": REPLICATED, "messages": hog.messages, "stream": True, "max_tokens": 30000, "ignore_eos": True}
    started = threading.Semaphore(0)
    stop = threading.Event()

    def stream() -> None:
        with api.stream("POST", "/v1/chat/completions", json=body, headers={"X-Session-Id": "hog-session"}) as answer:
            for line in answer.iter_lines():
                if line.startswith("data: {"):
                    started.release()
                if stop.is_set():
                    break

    slots = running_model(api, REPLICATED)["parallel"]
    # Its slots run a stream each and 2 more wait for them, as many as it takes: the next turn goes elsewhere.
    streams = [threading.Thread(target=stream) for _ in range(slots + 2)]
    for thread in streams:
        thread.start()
    try:
        for _ in range(slots):
            assert started.acquire(timeout=60)
        loads = {r["replica"]: r["load"] for r in alive(api, REPLICATED)}
        assert loads == {busy: slots + 2, **{r: 0 for r in loads if r != busy}}, loads
        before, before_decisions = answered_by(api, REPLICATED), decisions(api, REPLICATED)
        for i in range(4):
            Conversation(f"new-{i}").turn(api, 0)
        hog.turn(api, 1)  # its replica is full (2 waiting): Serve takes the router's second rank
        went = delta(answered_by(api, REPLICATED), before)  # busy's count grows as its waiting streams start
        assert [count for replica, count in went.items() if replica != busy] == [5], went
        assert delta(decisions(api, REPLICATED), before_decisions) == {"fallback": 4, "load": 1}
    finally:
        stop.set()
        for thread in streams:
            thread.join(60)
    shown = alive(api, REPLICATED)
    assert all(r["cached_prefixes"] > 0 for r in shown), shown
    assert re.search(r'nexa_replica_prefix_hits_total\{model="' + re.escape(REPLICATED), api.get("/metrics").text)


def test_auth_and_errors_keep_each_dialects_shape(ray_server: ServerProcess, api: httpx.Client) -> None:
    bare = httpx.post(ray_server.base_url + "/v1/chat/completions", json={"model": PINNED, "messages": []})
    assert bare.status_code == 401 and bare.json()["error"]["type"] == "authentication_error"
    missing = api.post("/v1/chat/completions", json={"model": "test/nowhere", "messages": [{"role": "user", "content": "x"}]})
    assert missing.status_code == 404 and "nexa pull test/nowhere" in missing.json()["error"]["message"]
    claude = anthropic.Anthropic(base_url=ray_server.base_url, api_key=KEY, max_retries=0)
    with pytest.raises(anthropic.NotFoundError) as caught:
        claude.messages.create(model="test/nowhere", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert caught.value.body["type"] == "error" and caught.value.body["error"]["type"] == "not_found_error"
    answer = claude.messages.create(model=PINNED, max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    assert answer.content[0].text == "Hello from a scripted model."
    ollama_error = api.post("/api/chat", json={"model": "test/nowhere", "messages": [{"role": "user", "content": "x"}]})
    assert ollama_error.status_code == 404 and set(ollama_error.json()) == {"error"}


def test_an_idle_model_scales_to_zero_and_back(api: httpx.Client, chat_client: openai.OpenAI) -> None:
    assert chat(chat_client, ELASTIC) == "Bonjour tout le monde"
    until(lambda: not replicas(api, ELASTIC), 90, f"{ELASTIC} to scale to zero after its 4 s keep-alive")
    started = time.monotonic()
    assert chat(chat_client, ELASTIC) == "Bonjour tout le monde"
    cold = time.monotonic() - started
    assert alive(api, ELASTIC)
    print(f"cold replica: first answer after {cold:.2f} s")


def test_requests_waiting_for_a_slot_add_a_replica_that_goes_once_they_end(api: httpx.Client, chat_client: openai.OpenAI) -> None:
    """SCALING (min_replicas=1, max_replicas=2, one slot): the replica reports requests waiting for its slot,
    nexa's policy asks Serve for another replica, and once idle the model is back at its one."""
    chat(chat_client, SCALING, 2)
    assert len(alive(api, SCALING)) == 1
    before = answered_by(api, SCALING)
    body = {"model": SCALING, "messages": [{"role": "user", "content": "count"}], "stream": True,
            "max_tokens": 30000, "ignore_eos": True}
    with Streams(api, body, 5) as streams:
        assert streams.started.acquire(timeout=60)
        waiting_since = time.monotonic()
        until(lambda: len(alive(api, SCALING)) == 2, 90, "a second replica for the requests waiting")
        until(lambda: len(delta(answered_by(api, SCALING), before)) == 2, 60, "the second replica to take a request")
        print(f"a second replica answered {time.monotonic() - waiting_since:.1f} s after requests began to wait")
    idle_since = time.monotonic()
    until(lambda: len(alive(api, SCALING)) == 1, 90, "the second replica to go once idle (min_replicas=1)")
    print(f"back to one replica {time.monotonic() - idle_since:.1f} s after the requests ended")


def test_a_lost_node_ends_its_requests_cleanly_and_its_replica_comes_back_elsewhere(
    cluster: Cluster, api: httpx.Client, chat_client: openai.OpenAI
) -> None:
    node_c = cluster.add_node(num_cpus=1, resources={"slot": 1})
    chat(chat_client, REPLICATED, 2)  # loaded
    for i in range(6):  # a conversation whose replica is on node_a (new ones spread over both)
        conversation = Conversation(f"moving-{i}", session=f"moving-{i}")
        before = answered_by(api, REPLICATED)
        conversation.turn(api, 0)
        home = one_request_went_to(api, before)
        if home in {r["replica"] for r in alive(api, REPLICATED) if r["node"] == cluster.node_a.node_id}:
            break
    else:
        pytest.fail("no new conversation went to node_a")
    body = {"model": REPLICATED, "messages": [{"role": "user", "content": "hi"}], "stream": True,
            "max_tokens": 8000, "ignore_eos": True}
    endings: list[str] = []
    started = threading.Semaphore(0)

    def stream() -> None:
        with api.stream("POST", "/v1/chat/completions", json=body) as answer:
            assert answer.status_code == 200
            last = ""
            for line in answer.iter_lines():
                if not last and line.startswith("data: {"):
                    started.release()
                last = line or last
            endings.append(last)

    streams = [threading.Thread(target=stream) for _ in range(4)]
    for thread in streams:
        thread.start()
    for _ in streams:
        assert started.acquire(timeout=60)
    cluster.remove_node(cluster.node_a)
    for thread in streams:
        thread.join(120)
    assert len(endings) == 4
    print(f"streams when node_a went: {sum(e == 'data: [DONE]' for e in endings)} finished, "
          f"{sum(e != 'data: [DONE]' for e in endings)} ended with an error event: {set(endings)}")
    for last in endings:  # finished, or told why not: never cut without a word
        assert last == "data: [DONE]" or '"error"' in last, last
    before = answered_by(api, REPLICATED)
    conversation.turn(api, 1)  # the conversation goes on, on the survivor, at once and without an error
    moved_to = one_request_went_to(api, before)
    assert moved_to != home, f"turn 2 went to {home} on the node that is gone"
    before = answered_by(api, REPLICATED)
    conversation.turn(api, 2)
    assert one_request_went_to(api, before) == moved_to, "the session stays where it moved"
    until(lambda: chat(chat_client, REPLICATED, 4) is not None, 60, "an answer from a surviving replica")
    moved = until(
        lambda: {r["node"] for r in alive(api, REPLICATED)} == {cluster.node_b.node_id, node_c.node_id},
        120, "the lost replica to come back on node_c",
    )
    assert moved
    for _ in range(4):
        chat(chat_client, REPLICATED, 4)


def test_sigterm_removes_every_nexa_application_and_leaves_no_worker(cluster: Cluster, ray_server: ServerProcess) -> None:
    assert worker_pids(Path(cluster.mark), variable=MARK), "the replicas' engine workers should be running now"
    assert ray_server.stop(timeout=90) == 0
    until(lambda: not worker_pids(Path(cluster.mark), variable=MARK), 60, "every engine worker on every node to exit")
    from ray import serve

    ray.init(address=cluster.address, namespace="nexa-test")
    try:
        assert not [name for name in serve.status().applications if name.startswith("nexa")]
    finally:
        ray.shutdown()
