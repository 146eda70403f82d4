"""Server settings, read once: CLI flag > NEXA_* environment variable > default."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ByteSize, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from nexa.engine.spec import NGRAM_MODES, KVCacheType
from nexa.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 18181
DEFAULT_MAX_BODY = 32 * 1024 * 1024  # a few base64 images
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def default_datadir() -> Path:
    return Path.home() / ".cache" / "nexa"


def default_threads() -> int:
    """Decode threads per worker: every core, as llama.cpp is memory-bound past that."""
    return max(1, os.cpu_count() or 1)


def default_memory_budget() -> int:
    """75% of RAM: room for the models with a quarter left to the system and other programs."""
    try:
        with open("/proc/meminfo") as meminfo:
            total_kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    except (OSError, StopIteration, ValueError):
        return 8 * 1024**3  # not Linux: assume a modest machine
    return total_kib * 1024 * 3 // 4


class ModelOptions(BaseModel):
    """Per-model overrides of the serve-wide engine settings (`--model-option NAME:ctx=8192,parallel=2`)."""

    model_config = ConfigDict(extra="forbid")

    ctx: int | None = Field(None, ge=64)
    parallel: int | None = Field(None, ge=1, le=256)
    ngl: int | None = None
    kv_cache_type: KVCacheType | None = None
    threads: int | None = Field(None, ge=1)
    runtime: str | None = Field(None, min_length=1)
    draft: str | None = Field(None, min_length=1)
    # Placement on a Ray cluster (`nexa serve --ray`); ignored by a single-machine server.
    replicas: int | None = Field(None, ge=0, description="Replicas to start with.")
    min_replicas: int | None = Field(None, ge=0, description="Fewest replicas; 0 scales to zero when idle.")
    max_replicas: int | None = Field(None, ge=1)
    num_cpus: float | None = Field(None, ge=0)
    num_gpus: float | None = Field(None, ge=0)
    resources: dict[str, float] = Field(default_factory=dict, description="Custom Ray resources per replica.")
    router: Literal["prefix", "serve"] | None = Field(
        None, description="Replica choice: nexa's session and prefix affinity (default), or Serve's own (two random, the less busy)."
    )

    @field_validator("draft")
    @classmethod
    def _draft_is_a_mode_or_a_model(cls, value: str | None) -> str | None:
        if value is not None and value not in NGRAM_MODES and "/" not in value:
            raise ValueError(f"draft is one of {', '.join(NGRAM_MODES)}, or a pulled model's org/repo")
        return value

    @classmethod
    def parse(cls, option: str) -> tuple[str, ModelOptions]:
        """'org/repo[:QUANT]:key=value,key=value' -> (name, options); names never hold '='."""
        name, sep, pairs = option.rpartition(":")
        if not sep or "=" not in pairs or not name:
            raise ValueError(f"model option {option!r} must look like org/repo[:QUANT]:ctx=8192,parallel=2")
        values: dict[str, Any] = {}
        for pair in filter(str.strip, pairs.split(",")):
            key, _, value = (part.strip() for part in pair.partition("="))
            if key.startswith("resource."):  # resource.gpu_node=1: a custom Ray resource
                values.setdefault("resources", {})[key.removeprefix("resource.")] = value
            else:
                values[key] = value
        try:
            return name.strip(), cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValueError(
                f"model option {option!r} ({problems}); keys are ctx, parallel, ngl, kv_cache_type, threads, runtime, draft, "
                "and on Ray replicas, min_replicas, max_replicas, num_cpus, num_gpus, resource.NAME, router"
            ) from None


class Settings(BaseSettings):
    """How `nexa serve` runs. Every field has a NEXA_<FIELD> environment variable."""

    model_config = SettingsConfigDict(env_prefix="NEXA_", extra="ignore", populate_by_name=True)

    host: str = Field(DEFAULT_HOST, description="Address to bind; HOST or HOST:PORT.")
    port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="Port to bind.")
    datadir: Path = Field(default_factory=default_datadir, description="Model store folder.")
    ctx: int | None = Field(
        None, ge=64,
        description="Context size (tokens) of each model, shared by its parallel slots: one request may use all of "
        "it. Default: the model's trained context, lowered only as far as its memory budget needs.",
    )
    parallel: int = Field(
        4, ge=1, le=256,
        description="Parallel slots (concurrent requests) per model; more requests queue. The slots share one KV "
        "cache of --ctx tokens; 4 already lifts throughput by batching, even on 2 cores.",
    )
    kv_cache_type: KVCacheType = Field(
        "f16", description="KV cache element type: f16, or q8_0 / q4_0, which fit about 2x / 3.5x the context in "
        "the same memory (at a small cost in quality).",
    )
    prompt_cache: ByteSize | None = Field(
        None,
        description="Host RAM per model for prompt caches that left a slot, so a conversation finds its prefix "
        "after other requests (bytes, or 2GiB; 0 turns it off). Default: as much as the model's KV cache, up to "
        "8 GiB, of what its memory budget leaves after its context. Counted in the budget.",
    )
    prompt_cache_disk: ByteSize = Field(
        2 * 1024**3,
        description="Disk for the prompt caches a model's slots hold when it unloads (keep-alive, memory budget, "
        "unload, shutdown), restored when it loads again with the same files, context and KV cache type; the oldest "
        "are deleted past this size (bytes, or 2GiB; 0 turns saving off). Kept in DATADIR/prompt-cache.",
    )
    threads: int = Field(default_factory=default_threads, ge=1, description="CPU threads per model.")
    ngl: int = Field(-1, description="Layers offloaded to the GPU; -1 lets the engine decide.")
    runtime: str = Field(
        "auto", min_length=1,
        description="What runs the models: 'auto' (the best runtime installed for this machine by "
        "'nexa runtime build', else xllamacpp), 'xllamacpp' (the portable wheel), an installed runtime's "
        "name, or the path of a llama-server binary.",
    )
    reasoning_format: Literal["parsed", "raw"] = Field(
        "parsed", description="'parsed' returns <think> text in reasoning_content; 'raw' leaves it in content."
    )
    load_timeout: float = Field(300.0, gt=0, description="Seconds to wait for a model to load.")
    keepalive: float = Field(
        300.0, ge=-1, description="Seconds an idle model stays loaded; 0 unloads it after each request, -1 never."
    )
    memory_budget: ByteSize = Field(
        default_factory=default_memory_budget,
        description="Memory all loaded models may take (bytes, or 8GiB, 512MB); idle models are unloaded to fit.",
    )
    device_memory_budget: ByteSize | None = Field(
        None,
        description="Memory loaded models may take on each GPU (bytes, or 20GiB); default 90% of each GPU's "
        "memory as its runtime reports it. Only a GPU runtime has one: see 'nexa runtime list'.",
    )
    max_loaded_models: int = Field(0, ge=0, description="Most models loaded at once; 0 means only the budget limits.")
    max_queue: int = Field(
        256, ge=0, description="Most requests waiting at once for a model that cannot load yet; more get 503."
    )
    max_waiting: int = Field(
        256, ge=0,
        description="Most requests waiting for a free slot of one loaded model (beyond its --parallel slots), "
        "served first come first served; more get 503 with Retry-After. Each holds two sockets in the router.",
    )
    queue_timeout: float = Field(
        120.0, gt=0, description="Seconds a request waits for its model to find room before a 503 with Retry-After."
    )
    route_load_threshold: int = Field(
        2, ge=0, description="On a Ray cluster: requests in flight that the replica holding a conversation's prompt "
        "may have above the least busy replica before a turn goes to the less busy one (and its prompt is read anew).",
    )
    preload: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Models to load at startup (comma-separated in the environment)."
    )
    model_options: Annotated[dict[str, ModelOptions], NoDecode] = Field(
        default_factory=dict,
        description="Per-model ctx/parallel/ngl/threads/runtime/draft: NAME:ctx=8192,parallel=2 (';'-separated in "
        "the environment); draft=ngram-mod (or another n-gram mode) or draft=org/small-model turns on speculative "
        "decoding.",
    )
    responses_store: int = Field(
        256, ge=0, description="Responses kept in memory for GET /v1/responses/{id} and previous_response_id; 0 keeps none."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Server log level.")
    ui: bool = Field(True, description="Serve the chat web UI (llama.cpp's llama-ui) at /.")
    # Security (see README "Security"). List fields read comma-separated environment variables.
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, validation_alias="NEXA_API_KEY",
        description="API key clients must send as 'Authorization: Bearer KEY'; repeat for several.",
    )
    origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Browser origins allowed by CORS (default: localhost ones only); '*' allows any.",
    )
    max_body: int = Field(DEFAULT_MAX_BODY, ge=1024, description="Largest request body in bytes; larger ones get 413.")
    body_timeout: float = Field(
        30.0, gt=0, description="Seconds a client has to send a request's headers, and then its body (else 408)."
    )
    media_root: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Folder whose files requests may name as media when not bound to loopback; repeatable.",
    )
    allow_private_urls: bool = Field(
        False, description="Let requests fetch media from loopback, link-local and private network addresses."
    )
    max_audio_seconds: float = Field(
        7200.0, gt=0,
        description="Longest recording /v1/audio/transcriptions and /translations take, in seconds; longer ones "
        "get 400 (decoded audio takes 32 KB a second while it is transcribed).",
    )

    @field_validator("api_keys", "origins", "preload", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value

    @field_validator("media_root", mode="before")
    @classmethod
    def _split_paths(cls, value: Any) -> Any:
        return [part for part in value.split(os.pathsep) if part] if isinstance(value, str) else value

    @field_validator("model_options", mode="before")
    @classmethod
    def _parse_model_options(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part for part in value.split(";") if part.strip()]
        if isinstance(value, (list, tuple)):
            return dict(ModelOptions.parse(option) for option in value)
        return value

    def options_for(self, name: str, quant: str) -> ModelOptions:
        """The overrides for `name:quant`: an entry naming the quant wins over one naming only the model."""
        by_key = {key.lower(): options for key, options in self.model_options.items()}
        return by_key.get(f"{name}:{quant}".lower()) or by_key.get(name.lower()) or ModelOptions()

    def runtime_for(self, name: str, quant: str) -> str:
        """The runtime chosen for `name:quant`: its --model-option's, else the serve-wide one."""
        return self.options_for(name, quant).runtime or self.runtime

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

    def loopback(self) -> bool:
        """Whether only this machine can reach the server (what the default security policy relies on)."""
        return is_loopback(self.bind()[0])


def load_settings(**overrides: object) -> Settings:
    """Settings from flags (`overrides`; None means unset) over NEXA_* variables over defaults.

    A bad value stops with a message naming the flag and the variable, not a pydantic traceback."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"--{str(e['loc'][0]).replace('_', '-')} / NEXA_{str(e['loc'][0]).upper()}: {e['msg']}"
            if e["loc"] else e["msg"]
            for e in exc.errors()
        )
        raise ConfigError(f"invalid setting ({problems}); fix the flag or the environment variable") from None


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
