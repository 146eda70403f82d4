def test_models_lists_every_pulled_quant_in_openai_shape(client, starter_name):
    models = {m.id: m for m in client.models.list()}
    assert {"test/qwen3-text:F32", f"{starter_name}:Q4_1"} <= set(models)
    card = models["test/qwen3-text:F32"]
    assert card.owned_by == "test" and card.object == "model"
    assert card.model_extra["type"] == "llm"


def test_one_model_by_id_with_or_without_quant(http):
    assert http.get("/v1/models/test/qwen3-text").json()["id"] == "test/qwen3-text:F32"
    assert http.get("/v1/models/TEST/QWEN3-TEXT:f32").json()["id"] == "test/qwen3-text:F32"
    assert http.get("/v1/models/nobody/nothing").status_code == 404


def test_health_and_openapi_describe_the_real_api(http):
    assert http.get("/health").json() == {"status": "ok"}
    schema = http.get("/openapi.json").json()
    assert "ChatCompletionRequest" in schema["components"]["schemas"]
    assert "ChatCompletionChunk" in schema["components"]["schemas"]
    assert "/v1/chat/completions" in schema["paths"]
