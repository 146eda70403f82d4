"""Every error is OpenAI-shaped, with the right status and a message that says what to do."""

from __future__ import annotations

import openai
import pytest

HI = [{"role": "user", "content": "hi"}]


def assert_error(response, status: int, param: str | None = None, contains: str = "") -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert contains in error["message"]
    if param is not None:
        assert error["param"] == param
    return error


def test_unknown_model_is_404_with_pull_hint(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="nobody/nothing", messages=HI)
    assert "nexa pull nobody/nothing" in info.value.message


def test_unknown_quant_is_404_listing_what_is_pulled(http):
    error = assert_error(http.post("/v1/chat/completions", json={"model": "test/qwen3-text:Q8_0", "messages": HI}), 404)
    assert "F32" in error["message"]


def test_malformed_name_is_400(http):
    assert_error(http.post("/v1/chat/completions", json={"model": "no-slash", "messages": HI}), 400, "model")


@pytest.mark.parametrize(
    ("body", "param", "contains"),
    [
        ({"messages": HI}, "model", "'model' is required"),
        ({"model": "test/qwen3-text"}, "messages", "'messages' is required"),
        ({"model": "test/qwen3-text", "messages": []}, "messages", "at least 1"),
        ({"model": "test/qwen3-text", "messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role", ""),
        ({"model": "test/qwen3-text", "messages": HI, "temperature": "hot"}, "temperature", ""),
        ({"model": "test/qwen3-text", "messages": HI, "max_tokens": -5}, "max_tokens", ""),
        ({"model": "test/qwen3-text", "messages": HI, "n": 3}, "n", ""),
    ],
)
def test_invalid_fields_are_400_naming_the_field(http, body, param, contains):
    assert_error(http.post("/v1/chat/completions", json=body), 400, param, contains)


def test_malformed_json_is_400(http):
    error = assert_error(http.post("/v1/chat/completions", content=b'{"model": '), 400)
    assert "not valid JSON" in error["message"]


def test_prompt_longer_than_the_context_is_400(http):
    long_prompt = "hello " * 3000  # the test server runs with --ctx 1024
    error = assert_error(http.post("/v1/completions", json={"model": "test/qwen3-text", "prompt": long_prompt}), 400)
    assert "context" in error["message"] and "--ctx" in error["message"]


def test_unknown_route_is_openai_shaped_404(http):
    assert_error(http.get("/v1/nothing"), 404)


def test_completion_echo_is_refused_clearly(http):
    assert_error(http.post("/v1/completions", json={"model": "test/qwen3-text", "prompt": "x", "echo": True}), 400, "echo")
