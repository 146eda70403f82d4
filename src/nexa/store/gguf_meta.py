"""What a GGUF header says about a model, read without loading the weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gguf import GGUFReader, GGUFValueType, LlamaFileType

from nexa.store.manifest import ModelType

# llama.cpp's pooling types: 1 mean, 2 cls, 3 last, 4 rank.
_POOLING_RANK = 4
_EMBEDDING_ARCHS = {"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3", "modern-bert", "neo-bert", "t5encoder"}


@dataclass(frozen=True)
class GGUFInfo:
    architecture: str
    name: str | None
    context_length: int | None
    block_count: int | None
    embedding_length: int | None
    pooling_type: int | None
    has_classifier: bool
    has_chat_template: bool
    parameters: int
    vision: bool
    audio: bool
    file_type: int | None

    @property
    def quant(self) -> str:
        """The quant the header declares ('MOSTLY_Q4_K_M' reads as 'Q4_K_M'), for files whose name has none."""
        try:
            name = LlamaFileType(self.file_type).name
        except ValueError:
            return "DEFAULT"
        return name.removeprefix("MOSTLY_").removeprefix("ALL_")

    @property
    def is_projector(self) -> bool:
        return self.architecture == "clip"

    def detect_type(self, has_mmproj: bool = False) -> ModelType:
        """Best guess at the model type; the user may override it."""
        if self.pooling_type == _POOLING_RANK or self.has_classifier:
            return ModelType.reranker
        if self.architecture in _EMBEDDING_ARCHS or self.pooling_type:
            return ModelType.embedder
        return ModelType.vlm if has_mmproj else ModelType.llm


def _scalar(reader: GGUFReader, key: str) -> Any:
    field = reader.get_field(key)
    if field is None or not field.types:
        return None
    if field.types[0] == GGUFValueType.ARRAY:
        return len(field.data)
    return field.contents()


def read_info(path: Path) -> GGUFInfo:
    """Parse the header of a GGUF file; raises ValueError when it is not one."""
    reader = GGUFReader(path, "r")
    arch = str(_scalar(reader, "general.architecture") or "unknown")
    return GGUFInfo(
        architecture=arch,
        name=_scalar(reader, "general.name"),
        context_length=_scalar(reader, f"{arch}.context_length"),
        block_count=_scalar(reader, f"{arch}.block_count"),
        embedding_length=_scalar(reader, f"{arch}.embedding_length"),
        pooling_type=_scalar(reader, f"{arch}.pooling_type"),
        has_classifier=reader.get_field(f"{arch}.classifier.output_labels") is not None
        or any(t.name == "cls.output.weight" for t in reader.tensors),
        has_chat_template=reader.get_field("tokenizer.chat_template") is not None,
        parameters=sum(int(t.n_elements) for t in reader.tensors),
        vision=bool(_scalar(reader, "clip.has_vision_encoder")),
        audio=bool(_scalar(reader, "clip.has_audio_encoder")),
        file_type=_scalar(reader, "general.file_type"),
    )
