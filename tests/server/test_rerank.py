"""/v1/rerank (Cohere/Jina/llama.cpp form) and /v1/reranking (Nexa form) through the real server and engine."""

from __future__ import annotations

import math

import pytest

RERANK = "test/bert-rerank"
QUERY = "what is a cat"
DOCS = ["the cat is a pet", "paris is a city in france", "the dog eats food", "red sky and blue sea"]


def rerank(http, **fields) -> dict:
    response = http.post("/v1/rerank", json={"model": RERANK, "query": QUERY, "documents": DOCS, **fields})
    assert response.status_code == 200, response.text
    return response.json()


def reranking(http, **fields) -> dict:
    response = http.post("/v1/reranking", json={"model": RERANK, "query": QUERY, "documents": DOCS, **fields})
    assert response.status_code == 200, response.text
    return response.json()


def raw_scores(http) -> list[float]:
    return reranking(http)["result"]


@pytest.mark.parity
def test_rerank_returns_every_document_best_first(http):
    reply = rerank(http)
    assert reply["model"] == RERANK and reply["usage"]["prompt_tokens"] > 0
    scores = [r["relevance_score"] for r in reply["results"]]
    assert sorted(r["index"] for r in reply["results"]) == [0, 1, 2, 3]
    assert scores == sorted(scores, reverse=True)
    assert all("document" not in r for r in reply["results"])


def test_rerank_top_n_keeps_the_best_and_return_documents_echoes_them(http):
    best = rerank(http)["results"]
    reply = rerank(http, top_n=2, return_documents=True)["results"]
    assert [r["index"] for r in reply] == [r["index"] for r in best[:2]]
    assert [r["document"]["text"] for r in reply] == [DOCS[r["index"]] for r in reply]
    assert len(rerank(http, top_n=10)["results"]) == len(DOCS)


def test_rerank_accepts_documents_as_text_objects(http):
    objects = rerank(http, documents=[{"text": d} for d in DOCS])["results"]
    assert objects == rerank(http)["results"]


@pytest.mark.parity
def test_reranking_gives_the_same_scores_in_input_order(http):
    scores = raw_scores(http)
    by_index = {r["index"]: r["relevance_score"] for r in rerank(http)["results"]}
    assert scores == pytest.approx([by_index[i] for i in range(len(DOCS))], abs=1e-6)
    assert reranking(http)["model"] == RERANK


@pytest.mark.parametrize(("fields", "expected"), [
    ({"normalize": True}, "softmax"),
    ({"normalize": True, "normalize_method": "softmax"}, "softmax"),
    ({"normalize": True, "normalize_method": "linear"}, "linear"),
    ({"normalize_method": "linear"}, "linear"),
    ({"normalize": True, "normalize_method": "none"}, "none"),
    ({"normalize": False, "normalize_method": "softmax"}, "none"),
])
def test_reranking_normalizes_scores_as_asked(http, fields, expected):
    raw = raw_scores(http)
    result = reranking(http, **fields)["result"]
    if expected == "softmax":
        exps = [math.exp(s) for s in raw]
        assert result == pytest.approx([e / sum(exps) for e in exps], abs=1e-6)
    elif expected == "linear":
        assert result == pytest.approx([(s - min(raw)) / (max(raw) - min(raw)) for s in raw], abs=1e-6)
    else:
        assert result == pytest.approx(raw, abs=1e-6)


def test_reranking_top_n_keeps_input_order_with_null_for_the_rest(http):
    raw = raw_scores(http)
    result = reranking(http, top_n=1)["result"]
    best = raw.index(max(raw))
    assert result[best] == pytest.approx(raw[best]) and [r for i, r in enumerate(result) if i != best] == [None] * 3


def test_many_documents_are_batched_and_scored_in_order(http):
    documents = [f"{DOCS[i % 4]} {'and the cat' * (i % 5)}" for i in range(130)]
    scores = reranking(http, documents=documents)["result"]
    assert len(scores) == 130
    for i in (0, 63, 64, 129):
        assert scores[i] == pytest.approx(reranking(http, documents=[documents[i]])["result"][0], abs=1e-5)
    results = rerank(http, documents=documents)["results"]
    assert sorted(r["index"] for r in results) == list(range(130))


@pytest.mark.parametrize(("route", "fields", "param"), [
    ("/v1/rerank", {"documents": []}, "documents"),
    ("/v1/reranking", {"documents": []}, "documents"),
    ("/v1/rerank", {"query": ""}, "query"),
    ("/v1/reranking", {"top_n": 0}, "top_n"),
    ("/v1/reranking", {"normalize_method": "sigmoid"}, "normalize_method"),
])
def test_bad_rerank_requests_are_refused(http, route, fields, param):
    response = http.post(route, json={"model": RERANK, "query": QUERY, "documents": DOCS, **fields})
    assert response.status_code == 400 and response.json()["error"]["param"] == param


def test_a_document_too_long_for_the_context_is_refused_by_its_index(http):
    documents = ["the cat", "cat " * 600]
    for route in ("/v1/rerank", "/v1/reranking"):
        response = http.post(route, json={"model": RERANK, "query": QUERY, "documents": documents})
        assert response.status_code == 400
        assert response.json()["error"]["message"].startswith("documents[1] and the query need up to")


@pytest.mark.parametrize("route", ["/v1/rerank", "/v1/reranking"])
def test_reranking_with_an_embedder_says_which_type_is_needed(http, route):
    response = http.post(route, json={"model": "test/bert-embed", "query": QUERY, "documents": DOCS})
    assert response.status_code == 404
    assert response.json()["error"]["message"].startswith(f"{route} needs a reranker model, but 'test/bert-embed' is an embedder")


def test_chat_and_embeddings_from_a_reranker_say_which_type_is_needed(http):
    chat = http.post("/v1/chat/completions", json={"model": RERANK, "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 404 and "use /v1/rerank or /v1/reranking" in chat.json()["error"]["message"]
    embed = http.post("/v1/embeddings", json={"model": RERANK, "input": "cat"})
    assert embed.status_code == 404 and "is a reranker" in embed.json()["error"]["message"]


@pytest.mark.parametrize("route", ["/v1/rerank", "/v1/reranking"])
def test_the_count_of_documents_is_capped(http, route):
    answer = http.post(route, json={"model": RERANK, "query": QUERY, "documents": ["doc"] * 1001})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "documents"
    assert "limit of 1000" in answer.json()["error"]["message"]
