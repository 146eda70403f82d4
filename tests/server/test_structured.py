"""Structured output: response_format constrains generation so that the reply parses and validates."""

from __future__ import annotations

import json
from typing import Literal

import pydantic
import pytest

ASK = [{"role": "user", "content": "Describe a city as JSON."}]


class City(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    name: Literal["Paris", "London", "Rome"]
    country: Literal["France", "England", "Italy"]
    capital: bool


def json_schema_format(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}


def test_json_object_output_parses(client, starter_name):
    reply = client.chat.completions.create(
        model=starter_name, messages=ASK, response_format={"type": "json_object"}, max_tokens=200, temperature=0
    )
    assert reply.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(reply.choices[0].message.content), dict)


def test_json_schema_output_of_a_random_model_follows_the_schema(client):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": False}
    reply = client.chat.completions.create(
        model="test/qwen3-random", messages=ASK, response_format=json_schema_format(schema), max_tokens=200, seed=3
    )
    assert reply.choices[0].finish_reason == "stop"
    assert set(json.loads(reply.choices[0].message.content)) == {"ok"}


def test_starter_model_reply_validates_against_a_pydantic_schema(client, starter_name):
    completion = client.chat.completions.parse(
        model=starter_name,
        messages=[{"role": "user", "content": "Give the name, country and capital flag of the capital of France."}],
        response_format=City,
        temperature=0,
        max_tokens=100,
    )
    message = completion.choices[0].message
    assert isinstance(message.parsed, City)
    City.model_validate_json(message.content)


def test_streamed_json_schema_output_joins_to_valid_json(client, starter_name):
    chunks = client.chat.completions.create(
        model=starter_name, messages=ASK, response_format=json_schema_format(City.model_json_schema()),
        temperature=0, max_tokens=100, stream=True,
    )
    City.model_validate_json("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))


@pytest.mark.parametrize(
    "schema",
    [{"type": "nonsense"}, {"$ref": "#/definitions/missing"}, {"type": "object", "properties": 5}],
)
def test_an_invalid_schema_is_400(http, schema):
    for stream in (False, True):
        response = http.post("/v1/chat/completions", json={
            "model": "test/qwen3-random", "messages": ASK, "response_format": json_schema_format(schema), "stream": stream,
        })
        assert response.status_code == 400, response.text
        assert "schema" in response.json()["error"]["message"].lower()


def test_json_schema_format_needs_its_schema_object(http):
    response = http.post("/v1/chat/completions", json={
        "model": "test/qwen3-random", "messages": ASK, "response_format": {"type": "json_schema"},
    })
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "response_format.json_schema"
