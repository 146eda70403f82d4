from nexa.compat.bodies import chat_body, completion_body
from nexa.wire.openai import ChatCompletionRequest, CompletionRequest
from nexa.store import FileEntry, Manifest, ModelType, QuantEntry

HI = [{"role": "user", "content": "hi"}]


def manifest(**fields) -> Manifest:
    return Manifest(name="org/m", model_type=ModelType.llm, source="test",
                    quants={"F32": QuantEntry(files=[FileEntry(name="m.gguf", size=1, sha256="0")])}, **fields)


def test_the_models_sampling_defaults_apply_only_where_the_request_is_silent():
    greedy = manifest(sampling_defaults={"temperature": 0.0, "top_k": 1})
    body = chat_body(ChatCompletionRequest(model="org/m", messages=HI, top_k=40), greedy, 1024)
    assert (body["temperature"], body["top_k"]) == (0.0, 40)
    assert completion_body(CompletionRequest(model="org/m", prompt="x"), greedy, 1024)["temperature"] == 0.0


def test_the_models_system_prompt_is_added_only_when_the_chat_has_none():
    helpful = manifest(system_prompt="Be helpful.")
    body = chat_body(ChatCompletionRequest(model="org/m", messages=HI), helpful, 1024)
    assert body["messages"][0] == {"role": "system", "content": "Be helpful."}
    own = [{"role": "system", "content": "Be brief."}, *HI]
    assert chat_body(ChatCompletionRequest(model="org/m", messages=own), helpful, 1024)["messages"][0]["content"] == "Be brief."


def test_openai_names_become_the_engines():
    body = chat_body(ChatCompletionRequest(model="org/m", messages=HI, max_completion_tokens=9, repetition_penalty=1.1,
                                           enable_think=False), manifest(), 1024)
    assert (body["max_tokens"], body["repeat_penalty"]) == (9, 1.1)
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert "model" not in body and "repetition_penalty" not in body
