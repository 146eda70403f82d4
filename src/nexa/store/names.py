"""Model names as users write them: `org/repo` or `org/repo:QUANT`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from nexa.errors import InvalidRequest, ModelNotFound, clip

_HF_URL = re.compile(r"^https?://(?:www\.)?huggingface\.co/", re.IGNORECASE)
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Hub repo ids are at most 96 characters a part; with a quant, no real name comes near this.
MAX_NAME = 256


@dataclass(frozen=True)
class ModelRef:
    """A parsed model name; `quant` is upper case or None for 'the default quant'."""

    repo: str
    quant: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        if len(text) > MAX_NAME:
            raise ModelNotFound(
                f"model '{clip(text)}' is not pulled: no model name is {len(text)} characters long "
                f"(at most {MAX_NAME}); see GET /v1/models or nexa list",
                param="model", code="model_not_found",
            )
        name = _HF_URL.sub("", text.strip(" ")).strip("/")  # a newline is no part of a name, even at its end
        repo, _, quant = name.partition(":")
        parts = repo.split("/")
        if len(parts) != 2 or not all(_PART.fullmatch(p) and ".." not in p for p in [*parts, *([quant] if quant else [])]):
            raise InvalidRequest(
                f"'{clip(text)}' is not a model name; use org/repo or org/repo:QUANT, e.g. ggml-org/Qwen3-1.7B-GGUF:Q4_K_M",
                param="model",
            )
        return cls(repo=repo, quant=quant.upper() or None)

    def __str__(self) -> str:
        return f"{self.repo}:{self.quant}" if self.quant else self.repo
