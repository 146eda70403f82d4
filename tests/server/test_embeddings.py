"""/v1/embeddings through the real server and engine, with the official openai client."""

from __future__ import annotations

import base64

import numpy as np
import openai
import pytest

from tests.fixtures.minilm import MINILM_NAME

EMBED = "test/bert-embed"
LIMIT = 512  # the tiny BERT's training context; the server's --ctx 1024 is capped to it


def vectors(client, model: str, inputs, **kwargs) -> np.ndarray:
    reply = client.embeddings.create(model=model, input=inputs, **kwargs)
    assert [d.index for d in reply.data] == list(range(len(reply.data)))
    return np.array([d.embedding for d in reply.data])


def error(response) -> dict:
    return response.json()["error"]


@pytest.mark.parity
def test_a_text_gets_one_unit_vector(client):
    reply = client.embeddings.create(model=EMBED, input="hello world")
    assert reply.object == "list" and reply.model == EMBED and len(reply.data) == 1
    vector = np.array(reply.data[0].embedding)
    assert vector.shape == (32,) and abs(np.linalg.norm(vector) - 1) < 1e-5
    assert reply.usage.prompt_tokens == reply.usage.total_tokens == 4  # [CLS] hello world [SEP]


@pytest.mark.parity
def test_each_input_gets_its_own_vector_in_input_order(client):
    texts = ["hello world", "the cat", "paris is a city"]
    together = vectors(client, EMBED, texts)
    alone = np.array([vectors(client, EMBED, text)[0] for text in texts])
    assert np.allclose(together, alone, atol=1e-5)
    assert np.dot(together[0], vectors(client, EMBED, "hello world")[0]) == pytest.approx(1.0, abs=1e-5)
    assert not np.allclose(together[0], together[1], atol=1e-3)


@pytest.mark.parity
def test_pooling_follows_what_the_gguf_declares(client):
    # Same weights, mean pooling in one file and CLS pooling in the other.
    mean, cls = vectors(client, EMBED, "the cat"), vectors(client, "test/bert-embed-cls", "the cat")
    assert not np.allclose(mean, cls, atol=1e-3)


def test_the_openai_client_decodes_our_base64_to_the_float_vectors(client, http):
    # Unless told otherwise the openai client asks for base64 and decodes it as little-endian float32.
    decoded = vectors(client, EMBED, ["hello world", "the cat"])
    body = {"model": EMBED, "input": ["hello world", "the cat"], "encoding_format": "float"}
    floats = [d["embedding"] for d in http.post("/v1/embeddings", json=body).json()["data"]]
    assert np.allclose(decoded, floats, atol=1e-6)


def test_raw_base64_is_little_endian_float32(http):
    body = {"model": EMBED, "input": "the cat", "encoding_format": "base64"}
    raw = http.post("/v1/embeddings", json=body).json()["data"][0]["embedding"]
    as_floats = http.post("/v1/embeddings", json={**body, "encoding_format": "float"}).json()["data"][0]["embedding"]
    assert np.allclose(np.frombuffer(base64.b64decode(raw), dtype="<f4"), as_floats, atol=1e-6)


def test_many_inputs_are_batched_and_come_back_in_input_order(client):
    words = ["cat", "dog", "car", "bus", "sun", "rain", "apple", "paris", "london", "python", "code", "sea"]
    texts = [f"{words[i % 12]} {words[(i // 12) % 12]} the {words[(i * 7) % 12]}" for i in range(150)]
    reply = client.embeddings.create(model=EMBED, input=texts)
    assert [d.index for d in reply.data] == list(range(150))
    for i in (0, 63, 64, 128, 149):  # both sides of each batch boundary
        assert np.allclose(reply.data[i].embedding, vectors(client, EMBED, texts[i])[0], atol=1e-5)
    halves = [client.embeddings.create(model=EMBED, input=part).usage.prompt_tokens for part in (texts[:75], texts[75:])]
    assert reply.usage.prompt_tokens == sum(halves)


def test_token_arrays_are_embedded_as_given(client):
    flat = client.embeddings.create(model=EMBED, input=[5, 6, 7])
    nested = client.embeddings.create(model=EMBED, input=[[5, 6, 7], [8, 9]])
    assert flat.usage.prompt_tokens == 3 and nested.usage.prompt_tokens == 5 and len(nested.data) == 2
    assert np.allclose(flat.data[0].embedding, nested.data[0].embedding, atol=1e-5)


def test_task_type_is_accepted(http):
    response = http.post("/v1/embeddings", json={"model": EMBED, "input": "the cat", "task_type": "search_query"})
    assert response.status_code == 200


@pytest.mark.parametrize(("value", "where"), [
    ([], "'input' is an empty list"),
    ("", "input[0] is empty"),
    (["the cat", ""], "input[1] is empty"),
    ([[5], []], "input[1] is empty"),
])
def test_empty_input_is_refused(http, value, where):
    response = http.post("/v1/embeddings", json={"model": EMBED, "input": value})
    assert response.status_code == 400 and where in error(response)["message"]


@pytest.mark.parity
def test_an_input_longer_than_the_context_is_refused_by_its_index(http):
    response = http.post("/v1/embeddings", json={"model": EMBED, "input": ["the cat", "cat " * 600]})
    assert response.status_code == 400
    assert error(response)["code"] == "input_too_long"
    assert error(response)["message"].startswith(f"input[1] has 602 tokens but the model takes at most {LIMIT}")
    tokens = http.post("/v1/embeddings", json={"model": EMBED, "input": [[5] * 10, [5] * (LIMIT + 1)]})
    assert tokens.status_code == 400 and "input[1] has 513 tokens" in error(tokens)["message"]


def test_an_input_exactly_at_the_limit_is_accepted(client):
    reply = client.embeddings.create(model=EMBED, input=["cat " * (LIMIT - 2)])
    assert reply.usage.prompt_tokens == LIMIT


def test_truncate_cuts_long_inputs_to_the_context_keeping_special_tokens(client, http):
    long_text = "the cat " * 400
    reply = http.post("/v1/embeddings", json={"model": EMBED, "input": ["dog", long_text], "truncate": True}).json()
    assert [d["index"] for d in reply["data"]] == [0, 1]
    assert reply["usage"]["prompt_tokens"] == 3 + LIMIT
    # The cut text still ends with [SEP]: it equals the text cut to fit, sent whole.
    fitted = " ".join(long_text.split()[: LIMIT - 2])
    assert np.allclose(reply["data"][1]["embedding"], vectors(client, EMBED, fitted)[0], atol=1e-5)
    tokens = client.embeddings.create(model=EMBED, input=[[5] * 600], extra_body={"truncate": True})
    assert tokens.usage.prompt_tokens == LIMIT


def test_token_ids_outside_the_vocabulary_are_refused_by_index(http):
    response = http.post("/v1/embeddings", json={"model": EMBED, "input": [[5, 6], [5, 100000]]})
    assert response.status_code == 400 and "input[1] holds token id 100000" in error(response)["message"]


def test_dimensions_is_refused_with_a_reason(http):
    response = http.post("/v1/embeddings", json={"model": EMBED, "input": "cat", "dimensions": 16})
    assert response.status_code == 400 and error(response)["param"] == "dimensions"


def test_embeddings_from_a_chat_model_say_which_type_is_needed(http):
    response = http.post("/v1/embeddings", json={"model": "test/qwen3-text", "input": "cat"})
    assert response.status_code == 404 and error(response)["code"] == "wrong_model_type"
    assert error(response)["message"].startswith("/v1/embeddings needs an embedder model, but 'test/qwen3-text' is an llm")


@pytest.mark.parametrize("route", ["/v1/chat/completions", "/v1/completions"])
def test_generation_from_an_embedder_says_which_type_is_needed(http, route):
    body = {"model": EMBED, "messages": [{"role": "user", "content": "hi"}], "prompt": "hi"}
    response = http.post(route, json=body)
    assert response.status_code == 404
    assert error(response)["message"].startswith(f"{route} needs an llm or vlm model, but '{EMBED}' is an embedder")
    assert "use /v1/embeddings" in error(response)["message"]


def test_unknown_model_is_a_404(client):
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="nobody/nothing", input="cat")


@pytest.mark.slow
def test_minilm_similarities_match_sentence_transformers(client):
    texts = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
    matrix = vectors(client, MINILM_NAME, texts)
    assert matrix.shape == (3, 384)
    similarity = matrix @ matrix.T
    assert similarity[0, 1] == pytest.approx(0.6660, abs=1e-3)
    assert similarity[0, 2] == pytest.approx(0.1046, abs=1e-3)
    assert similarity[1, 2] == pytest.approx(0.1411, abs=1e-3)
    floats = vectors(client, MINILM_NAME, texts, encoding_format="float")
    assert np.allclose(matrix, floats, atol=1e-6)


def test_the_count_of_inputs_is_capped_at_once(http):
    """Was 140 s and 1 GB of router memory for 50k inputs."""
    answer = http.post("/v1/embeddings", json={"model": EMBED, "input": ["x"] * 50_000})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "too_many_inputs"
    assert "2048" in answer.json()["error"]["message"] and answer.elapsed.total_seconds() < 2


def test_the_total_tokens_of_a_request_are_capped(http):
    within = {"model": EMBED, "input": [[5] * 100] * 2048}  # 204,800 tokens
    assert len(http.post("/v1/embeddings", json=within).json()["data"]) == 2048
    over = http.post("/v1/embeddings", json={"model": EMBED, "input": [[5] * 150] * 2001})  # 300,150 tokens
    assert over.status_code == 400 and over.json()["error"]["code"] == "too_many_tokens"
    assert "300150 tokens" in over.json()["error"]["message"]
