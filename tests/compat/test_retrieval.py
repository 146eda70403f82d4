"""The pure rules behind /v1/embeddings, /v1/reranking and /v1/rerank."""

from __future__ import annotations

import pytest

from nexa.compat.retrieval import (
    batches,
    check_token_ids,
    embedding_inputs,
    fit,
    may_exceed,
    normalize_method,
    normalized,
    ranking,
    scores_in_order,
    truncated,
)
from nexa.errors import InvalidRequest, WrongModelType
from nexa.server.model_types import require_model_type
from nexa.store import Manifest, ModelType


class TestEmbeddingInputs:
    def test_a_text_becomes_a_list_of_one(self):
        assert embedding_inputs("cat") == ["cat"]

    def test_a_flat_token_array_is_one_input_and_a_nested_one_many(self):
        assert embedding_inputs([1, 2, 3]) == [[1, 2, 3]]
        assert embedding_inputs([[1, 2], [3]]) == [[1, 2], [3]]

    def test_token_id_zero_counts_as_content(self):
        assert embedding_inputs([0]) == [[0]]

    @pytest.mark.parametrize(("value", "message"), [
        ([], "'input' is an empty list"),
        ("", "input[0] is empty"),
        (["a", "b", ""], "input[2] is empty"),
        ([[1], []], "input[1] is empty"),
    ])
    def test_empty_inputs_are_refused_by_index(self, value, message):
        with pytest.raises(InvalidRequest, match=message.replace("[", r"\[")) as caught:
            embedding_inputs(value)
        assert caught.value.code == "empty_input"


class TestLengths:
    def test_only_texts_that_could_be_too_long_need_counting(self):
        assert not may_exceed(512, "a" * 504)
        assert may_exceed(512, "a" * 505)
        assert not may_exceed(10, "é") and may_exceed(9, "é")  # bytes count, not characters: 2 + margin 8

    def test_a_pair_counts_both_texts_and_both_margins(self):
        assert not may_exceed(32, "a" * 8, "b" * 8)
        assert may_exceed(32, "a" * 8, "b" * 9)

    def test_fit_refuses_an_over_long_input_by_index_unless_truncating(self):
        fit(0, 512, 512, truncate=False)
        fit(3, 900, 512, truncate=True)
        with pytest.raises(InvalidRequest, match=r"input\[3\] has 513 tokens but the model takes at most 512"):
            fit(3, 513, 512, truncate=False)

    def test_truncation_keeps_the_special_tokens_around_the_text(self):
        full, plain = [101, 1, 2, 3, 4, 5, 102], [1, 2, 3, 4, 5]
        assert truncated(full, plain, 5) == [101, 1, 2, 3, 102]

    def test_truncation_without_special_tokens_is_a_plain_cut(self):
        assert truncated([1, 2, 3, 4], [1, 2, 3, 4], 2) == [1, 2]

    def test_token_ids_outside_the_vocabulary_are_named(self):
        check_token_ids(0, [0, 99], 100)
        with pytest.raises(InvalidRequest, match=r"input\[2\] holds token id -1"):
            check_token_ids(2, [5, -1], 100)
        with pytest.raises(InvalidRequest, match=r"token id 100, outside the model's vocabulary \(0..99\)"):
            check_token_ids(0, [100], 100)


def test_batches_cover_every_item_in_order_with_offsets():
    assert batches(list(range(5)), 2) == [(0, [0, 1]), (2, [2, 3]), (4, [4])]
    assert [offset for offset, _ in batches(list(range(150)))] == [0, 64, 128]


class TestScores:
    @pytest.mark.parametrize(("normalize", "method", "expected"), [
        (None, None, "none"),
        (True, None, "softmax"),
        (True, "linear", "linear"),
        (None, "linear", "linear"),
        (False, "softmax", "none"),
    ])
    def test_normalize_fields_combine_into_one_method(self, normalize, method, expected):
        assert normalize_method(normalize, method) == expected

    def test_softmax_sums_to_one_and_keeps_the_order(self):
        result = normalized([2.0, -1.0, 0.5], "softmax")
        assert sum(result) == pytest.approx(1.0) and result[0] > result[2] > result[1]

    def test_softmax_is_stable_for_large_scores(self):
        assert normalized([1000.0, 1000.0], "softmax") == pytest.approx([0.5, 0.5])

    def test_linear_maps_min_to_zero_and_max_to_one(self):
        assert normalized([2.0, -2.0, 0.0], "linear") == pytest.approx([1.0, 0.0, 0.5])
        assert normalized([3.0, 3.0], "linear") == [1.0, 1.0]

    def test_none_leaves_raw_scores(self):
        assert normalized([2.0, -2.0], "none") == [2.0, -2.0]

    def test_ranking_is_best_first_with_ties_in_input_order_and_cut_to_top_n(self):
        assert ranking([0.1, 0.9, 0.5, 0.9], None) == [1, 3, 2, 0]
        assert ranking([0.1, 0.9, 0.5, 0.9], 2) == [1, 3]

    def test_scores_in_order_null_the_documents_outside_top_n(self):
        assert scores_in_order([0.1, 0.9, 0.5], 2) == [None, 0.9, 0.5]
        assert scores_in_order([0.1, 0.9, 0.5], None) == [0.1, 0.9, 0.5]


def _manifest(model_type: ModelType) -> Manifest:
    return Manifest(name="org/model", model_type=model_type, quants={}, source="test")


@pytest.mark.parametrize(("route", "model_type", "message"), [
    ("/v1/embeddings", ModelType.llm, "/v1/embeddings needs an embedder model, but 'org/model' is an llm; "
                                      "use /v1/chat/completions for it"),
    ("/v1/rerank", ModelType.embedder, "/v1/rerank needs a reranker model, but 'org/model' is an embedder; "
                                       "use /v1/embeddings for it"),
    ("/v1/chat/completions", ModelType.reranker, "/v1/chat/completions needs an llm or vlm model, but 'org/model' "
                                                 "is a reranker; use /v1/rerank or /v1/reranking for it"),
])
def test_a_route_refuses_models_of_another_type_and_names_the_right_route(route, model_type, message):
    with pytest.raises(WrongModelType) as caught:
        require_model_type(_manifest(model_type), route)
    assert caught.value.message.startswith(message) and caught.value.param == "model"


def test_a_route_serves_the_types_it_lists():
    require_model_type(_manifest(ModelType.vlm), "/v1/chat/completions")
    require_model_type(_manifest(ModelType.reranker), "/v1/reranking")
