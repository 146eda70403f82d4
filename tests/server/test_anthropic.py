"""Anthropic's Messages API through the real engine, checked with the official anthropic client."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import anthropic
import pytest

from nexa.store import Store
from tests.conftest import ServerProcess
from tests.fixtures.media_samples import image_bytes

SCRIPT = "Hello from a scripted model."
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]
THINK = {"type": "enabled", "budget_tokens": 1024}


@pytest.fixture(scope="module")
def claude(server: ServerProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.base_url, api_key="x", max_retries=0, timeout=60)


def test_create_with_system_and_several_turns(claude):
    message = claude.messages.create(
        model="test/qwen3-text", max_tokens=64, system="You are terse.",
        messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello."},
                  {"role": "user", "content": [{"type": "text", "text": "again"}]}],
        metadata={"user_id": "u1"}, extra_body={"temperature": 0.2, "top_p": 0.9, "top_k": 20},
    )
    assert message.id.startswith("msg_") and message.type == "message" and message.role == "assistant"
    assert message.model == "test/qwen3-text"
    assert [(b.type, b.text) for b in message.content] == [("text", SCRIPT)]
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens > 10 and message.usage.output_tokens > 0


def test_max_tokens_cuts_the_reply(claude):
    message = claude.messages.create(model="test/qwen3-text", max_tokens=2, messages=[{"role": "user", "content": "hi"}])
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 2


def test_stream_sends_text_deltas_the_sdk_assembles(claude):
    with claude.messages.stream(model="test/qwen3-text", max_tokens=64, messages=[{"role": "user", "content": "hi"}]) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1 and "".join(pieces) == SCRIPT
    assert [b.text for b in final.content] == [SCRIPT] and final.stop_reason == "end_turn"
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0


def test_raw_stream_has_every_event_type_in_order(claude):
    events = [e.type for e in claude.messages.create(
        model="test/qwen3-text", max_tokens=64, messages=[{"role": "user", "content": "hi"}], stream=True)]
    assert events[:3] == ["message_start", "content_block_start", "content_block_delta"]
    assert events[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_a_tool_call_is_a_tool_use_block_then_a_tool_result_turn(claude):
    message = claude.messages.create(model="test/qwen3-tool", max_tokens=200, messages=ASK_WEATHER, tools=[WEATHER_TOOL])
    assert message.stop_reason == "tool_use"
    (call,) = [b for b in message.content if b.type == "tool_use"]
    assert call.id.startswith("toolu_") and call.name == "get_weather" and call.input == {"city": "Paris"}
    follow_up = claude.messages.create(
        model="test/qwen3-text", max_tokens=64, tools=[WEATHER_TOOL], tool_choice={"type": "auto"},
        messages=[*ASK_WEATHER, {"role": "assistant", "content": message.content},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21 C"}]}],
    )
    assert follow_up.content[0].text == SCRIPT


def test_a_streamed_tool_call_is_assembled_by_the_sdk(claude):
    with claude.messages.stream(model="test/qwen3-tool", max_tokens=200, messages=ASK_WEATHER, tools=[WEATHER_TOOL],
                                tool_choice={"type": "tool", "name": "get_weather"}) as stream:
        final = stream.get_final_message()
    (call,) = [b for b in final.content if b.type == "tool_use"]
    assert call.name == "get_weather" and call.input == {"city": "Paris"} and final.stop_reason == "tool_use"


def test_thinking_comes_as_a_thinking_block_before_the_text(claude):
    message = claude.messages.create(model="test/qwen3-think", max_tokens=200, messages=ASK_WEATHER, thinking=THINK)
    thinking, text = message.content
    assert thinking.type == "thinking" and "weather" in thinking.thinking and thinking.signature
    assert text.type == "text" and text.text == "It is sunny in Paris."
    # The thinking block can be sent back in history.
    again = claude.messages.create(
        model="test/qwen3-think", max_tokens=200, thinking={"type": "disabled"},
        messages=[*ASK_WEATHER, {"role": "assistant", "content": message.content}, {"role": "user", "content": "thanks"}],
    )
    assert again.stop_reason == "end_turn"


def test_streamed_thinking_is_signed_and_assembled(claude):
    with claude.messages.stream(model="test/qwen3-think", max_tokens=200, messages=ASK_WEATHER, thinking=THINK) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_message()
    assert "thinking" in kinds and "signature" in kinds
    thinking, text = final.content
    assert thinking.type == "thinking" and "weather" in thinking.thinking and thinking.signature
    assert text.text == "It is sunny in Paris."


def test_a_base64_image_block_reaches_a_vision_model(claude):
    png = base64.b64encode(image_bytes("PNG")).decode()
    ask = [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
        {"type": "text", "text": "What is this?"},
    ]}]
    with_image = claude.messages.create(model="test/vision-gemma3", max_tokens=64, messages=ask)
    text_only = claude.messages.create(model="test/vision-gemma3", max_tokens=64, messages=[{"role": "user", "content": "What is this?"}])
    assert with_image.content[0].text == SCRIPT
    assert with_image.usage.input_tokens > text_only.usage.input_tokens
    counted = claude.messages.count_tokens(model="test/vision-gemma3", messages=ask).input_tokens
    assert counted > claude.messages.count_tokens(model="test/vision-gemma3", messages=[{"role": "user", "content": "What is this?"}]).input_tokens


def test_a_broken_image_is_refused_in_anthropic_shape(claude):
    ask = [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "bm90IGFuIGltYWdl"}}]}]
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(model="test/vision-gemma3", max_tokens=64, messages=ask)
    assert caught.value.body["error"]["type"] == "invalid_request_error"


def test_count_tokens_uses_the_models_template_and_grows_with_the_input(claude):
    def count(**fields) -> int:
        return claude.messages.count_tokens(model="test/qwen3-text", **fields).input_tokens

    short = count(messages=[{"role": "user", "content": "hi"}])
    longer = count(messages=[{"role": "user", "content": "hi " * 50}])
    with_system = count(messages=[{"role": "user", "content": "hi"}], system="You are a careful assistant.")
    with_tools = count(messages=[{"role": "user", "content": "hi"}], tools=[WEATHER_TOOL])
    assert 3 < short < longer and short < with_system and short < with_tools
    created = claude.messages.create(model="test/qwen3-text", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    # Anthropic's input_tokens leave out what the prompt cache held: the count is the whole prompt
    assert short == created.usage.input_tokens + created.usage.cache_read_input_tokens


def test_bad_input_is_an_anthropic_error_naming_the_field(server, claude):
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.post("/v1/messages", cast_to=object, body={"model": "test/qwen3-text", "messages": ASK_WEATHER})
    assert caught.value.body == {"type": "error", "error": {"type": "invalid_request_error", "message": "'max_tokens' is required"}}
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(model="test/qwen3-text", max_tokens=8,
                               messages=[{"role": "user", "content": [{"type": "video", "url": "x"}]}])
    assert "messages.0.content.0" in caught.value.body["error"]["message"]


def test_an_unknown_model_is_not_found_error(claude):
    with pytest.raises(anthropic.NotFoundError) as caught:
        claude.messages.create(model="nobody/nothing", max_tokens=8, messages=ASK_WEATHER)
    assert caught.value.body["error"]["type"] == "not_found_error" and "pull" in caught.value.body["error"]["message"]
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.count_tokens(model="nobody/nothing", messages=ASK_WEATHER)


def test_a_model_of_the_wrong_type_is_refused(claude):
    with pytest.raises(anthropic.NotFoundError) as caught:
        claude.messages.create(model="test/bert-embed", max_tokens=8, messages=ASK_WEATHER)
    assert "/v1/messages" in caught.value.body["error"]["message"]


@pytest.fixture(scope="module")
def keyed(session_store: Store) -> Iterator[ServerProcess]:
    process = ServerProcess(session_store.root, "--api-key", "secret")
    yield process
    process.stop()


def test_x_api_key_is_checked_and_failures_are_anthropic_shaped(keyed):
    good = anthropic.Anthropic(base_url=keyed.base_url, api_key="secret", max_retries=0, timeout=60)
    assert good.messages.create(model="test/qwen3-text", max_tokens=8, messages=ASK_WEATHER).content
    bad = anthropic.Anthropic(base_url=keyed.base_url, api_key="wrong", max_retries=0, timeout=60)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        bad.messages.create(model="test/qwen3-text", max_tokens=8, messages=ASK_WEATHER)
    assert caught.value.body["type"] == "error" and caught.value.body["error"]["type"] == "authentication_error"
    assert "invalid API key" in caught.value.body["error"]["message"]


def test_an_engine_failure_mid_stream_is_an_error_event(server):
    claude = anthropic.Anthropic(base_url=server.base_url, api_key="x", max_retries=0, timeout=60)
    events = claude.messages.create(model="test/qwen3-tool-bad", max_tokens=64, messages=ASK_WEATHER,
                                    tools=[WEATHER_TOOL], stream=True)
    with pytest.raises(anthropic.APIStatusError) as caught:
        for _ in events:
            pass
    assert caught.value.body["type"] == "error" and caught.value.body["error"]["type"] == "api_error"


# ---------------------------------------------------------------- agents (issue 20)

TOOL_TURN = [*ASK_WEATHER,
             {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                                "input": {"city": "Paris"}}]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]}]


@pytest.mark.parametrize("thinking", [None, {"type": "disabled"}])
def test_thinking_never_lands_in_text_when_not_asked_for(claude, thinking):
    """The model thinks anyway (a tool_result turn invites it); the engine, told not to think, leaves it raw."""
    extra = {"thinking": thinking} if thinking else {}
    for messages in (ASK_WEATHER, TOOL_TURN):
        message = claude.messages.create(model="test/qwen3-think", max_tokens=200, messages=messages,
                                         tools=[WEATHER_TOOL], **extra)
        assert [(b.type, b.text) for b in message.content] == [("text", "It is sunny in Paris.")]
        with claude.messages.stream(model="test/qwen3-think", max_tokens=200, messages=messages,
                                    tools=[WEATHER_TOOL], **extra) as stream:
            final = stream.get_final_message()
        assert [(b.type, b.text) for b in final.content] == [("text", "It is sunny in Paris.")]


def test_the_stop_sequence_that_fired_is_named(claude):
    message = claude.messages.create(model="test/qwen3-text", max_tokens=50, messages=ASK_WEATHER,
                                     stop_sequences=["nothing", " scripted"])
    assert (message.stop_reason, message.stop_sequence, message.content[0].text) == ("stop_sequence", " scripted",
                                                                                      "Hello from a")
    with claude.messages.stream(model="test/qwen3-text", max_tokens=50, messages=ASK_WEATHER,
                                stop_sequences=[" scripted"]) as stream:
        final = stream.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", " scripted")
    plain = claude.messages.create(model="test/qwen3-text", max_tokens=50, messages=ASK_WEATHER, stop_sequences=["zzz"])
    assert (plain.stop_reason, plain.stop_sequence) == ("end_turn", None)


def test_a_system_message_in_the_conversation_is_accepted(claude):
    """Claude Code sends its environment notes as a `system` message after the first user turn."""
    message = claude.messages.create(model="test/qwen3-text", max_tokens=50, system="You are terse.", messages=[
        *ASK_WEATHER, {"role": "system", "content": [{"type": "text", "text": "# Environment\ncwd: /tmp"}]}])
    assert message.content[0].text == SCRIPT
