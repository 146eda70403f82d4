"""The model name every dialect's requests carry, with the grammar nexa accepts written into /openapi.json.

The grammar is only documented here: nexa.store.names.ModelRef checks every name and says what is wrong
with it ("use org/repo or org/repo:QUANT"), which a schema error could not. Names it also accepts (a Hub
URL, surrounding spaces, an over-long name that is simply not pulled) are left out of the pattern.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from nexa.store.names import MAX_NAME

# org/repo[:QUANT]: each part (the quant too) starts with a letter or digit and holds no '..'; "org/repo:"
# (an empty quant) means the default quant, as no quant does.
_PART = r"[A-Za-z0-9](\.?[A-Za-z0-9_-])*\.?"
MODEL_NAME_PATTERN = rf"^{_PART}/{_PART}(:({_PART})?)?$"
# What a pull takes: a Hub repo id as written, the quant (if any) not empty.
HUB_NAME_PATTERN = rf"^{_PART}/{_PART}(:{_PART})?$"
# Ollama clients may put hf.co/ in front, as `ollama pull hf.co/org/repo` does.
OLLAMA_NAME_PATTERN = rf"^((hf\.co|huggingface\.co)/)?{_PART}/{_PART}(:({_PART})?)?$"


def name_schema(pattern: str = MODEL_NAME_PATTERN) -> dict[str, Any]:
    """The JSON schema keywords that document a model name."""
    return {"pattern": pattern, "minLength": 1, "maxLength": MAX_NAME}


def ModelName(description: str = "Store name: org/repo or org/repo:QUANT (case-insensitive quant).",
              **field: Any) -> Any:
    """A `model` field: a string whose documented grammar is the one nexa accepts."""
    return Field(description=description, json_schema_extra=name_schema(), **field)
