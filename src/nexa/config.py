"""Server settings, read once: CLI flag > NEXA_* environment variable > default."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 18181


def default_datadir() -> Path:
    return Path.home() / ".cache" / "nexa"


def default_threads() -> int:
    """Decode threads per worker: every core, as llama.cpp is memory-bound past that."""
    return max(1, os.cpu_count() or 1)


class Settings(BaseSettings):
    """How `nexa serve` runs. Every field has a NEXA_<FIELD> environment variable."""

    model_config = SettingsConfigDict(env_prefix="NEXA_", extra="ignore")

    host: str = Field(DEFAULT_HOST, description="Address to bind; HOST or HOST:PORT.")
    port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="Port to bind.")
    datadir: Path = Field(default_factory=default_datadir, description="Model store folder.")
    ctx: int = Field(4096, ge=64, description="Context size (tokens) of each parallel slot.")
    parallel: int = Field(4, ge=1, le=256, description="Parallel slots (concurrent requests) per model.")
    threads: int = Field(default_factory=default_threads, ge=1, description="CPU threads per model.")
    ngl: int = Field(-1, description="Layers offloaded to the GPU; -1 lets the engine decide.")
    reasoning_format: Literal["parsed", "raw"] = Field(
        "parsed", description="'parsed' returns <think> text in reasoning_content; 'raw' leaves it in content."
    )
    load_timeout: float = Field(300.0, gt=0, description="Seconds to wait for a model to load.")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Server log level.")

    @field_validator("host")
    @classmethod
    def _strip_host(cls, value: str) -> str:
        return value.strip() or DEFAULT_HOST

    def bind(self) -> tuple[str, int]:
        """The (host, port) to listen on; NEXA_HOST may carry the port, as the reference's does."""
        host, sep, port = self.host.rpartition(":")
        if sep and port.isdigit() and not host.endswith(":"):
            return host.strip("[]"), int(port)
        return self.host.strip("[]"), self.port
