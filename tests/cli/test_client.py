"""The chat client in-process: errors that name the next step, request fields, the stats line."""

from __future__ import annotations

import pytest

from nexa.cli.client import Answer, NexaClient, Sampling
from nexa.errors import ModelNotFound, NexaError
from tests.conftest import ServerProcess


def test_an_unreachable_server_says_how_to_start_one():
    with pytest.raises(NexaError, match="start one with: nexa serve"):
        NexaClient("http://127.0.0.1:9").model_type("test/qwen3-text")


def test_an_unknown_model_says_how_to_pull_it(server: ServerProcess):
    with pytest.raises(ModelNotFound, match="nexa pull nobody/nothing"):
        NexaClient(server.base_url).model_type("nobody/nothing")


def test_top_k_travels_in_the_extra_body():
    assert Sampling(temperature=0, top_k=5).request_fields() == {"temperature": 0, "extra_body": {"top_k": 5}}


def test_stats_give_tokens_speed_and_time_to_first_token():
    answer = Answer(tokens=21, started=10.0, first_token=10.25, finished=12.25)
    assert answer.stats() == "21 tokens · 10.5 tok/s · first token 0.25 s"
