"""The manifest: what a model folder holds. A folder without one is not a model."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path

from pydantic import BaseModel, Field


_PREFERRED_QUANTS = ("Q4_K_M", "Q4_0", "Q8_0")


def preferred_quant(sizes: Mapping[str, int]) -> str:
    """The quant to use when none is named: Q4_K_M, Q4_0, Q8_0 (good quality per byte), else the smallest."""
    for preferred in _PREFERRED_QUANTS:
        if preferred in sizes:
            return preferred
    return min(sizes, key=lambda q: (sizes[q], q))


class ModelType(str, Enum):
    llm = "llm"
    vlm = "vlm"
    embedder = "embedder"
    reranker = "reranker"


class FileEntry(BaseModel):
    """One weight file. `path` is set when the file was imported in place and lives outside the store."""

    name: str = Field(description="File name, relative to the model folder.")
    size: int = Field(ge=0, description="Size in bytes.")
    sha256: str = Field(description="Hex sha256 of the file's bytes.")
    path: str | None = Field(None, description="Absolute path of a file imported without copying.")

    def location(self, model_dir: Path) -> Path:
        return Path(self.path) if self.path else model_dir / self.name

    @property
    def external(self) -> bool:
        return self.path is not None


class QuantEntry(BaseModel):
    """A quant is one or more files: split shards load together, first shard first."""

    files: list[FileEntry] = Field(min_length=1)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


class Manifest(BaseModel):
    """Written last and atomically, so its presence means every file is complete."""

    name: str = Field(description="org/repo")
    model_type: ModelType
    quants: dict[str, QuantEntry] = Field(description="Quant name (upper case) to its files.")
    mmproj: FileEntry | None = Field(None, description="Multimodal projector for vlm models.")
    source: str = Field(description="Where the files came from, e.g. 'hf:org/repo' or 'local:/path'.")
    pulled_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    system_prompt: str | None = Field(
        None, description="System message added when a chat request has none (small models need one)."
    )
    sampling_defaults: dict[str, float] = Field(
        default_factory=dict,
        description="Sampling fields (e.g. temperature) used when a request leaves them out, as Ollama's PARAMETER.",
    )

    @property
    def org(self) -> str:
        return self.name.split("/", 1)[0]

    def default_quant(self) -> str:
        """Deterministic choice when a request names no quant (the same rule as `nexa pull`'s default)."""
        return preferred_quant({name: quant.size for name, quant in self.quants.items()})

    def files(self) -> list[FileEntry]:
        entries = [f for quant in self.quants.values() for f in quant.files]
        return entries + ([self.mmproj] if self.mmproj else [])
