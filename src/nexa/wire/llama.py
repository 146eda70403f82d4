"""llama-server's router-mode management API, as its web UI (llama-ui) speaks it: /props, /models,
/models/load, /models/unload, /models/sse, POST and DELETE /models. Shapes follow llama.cpp's
tools/server and the UI's `src/lib/types/api.d.ts`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from nexa.wire.names import HUB_NAME_PATTERN, MAX_NAME, ModelName, name_schema

Status = Literal["unloaded", "loading", "loaded"]


class ModelStatus(BaseModel):
    value: Status = Field(description="unloaded, loading or loaded.")
    failed: bool | None = Field(None, description="True when the last load failed or the worker crashed.")
    exit_code: int | None = Field(None, description="1 after a failure (nexa's workers report no exit status here).")
    reason: str | None = Field(None, description="nexa: why the last load failed, while its back-off lasts.")


class ModelArchitecture(BaseModel):
    input_modalities: list[str] = Field(description="text, and image and audio where the projector takes them.")


class RouterModel(BaseModel):
    id: str = Field(description="org/repo:QUANT, usable as `model` in requests.")
    object: Literal["model"] = "model"
    owned_by: str
    created: int
    in_cache: bool = Field(True, description="Always true: nexa lists pulled models only.")
    path: str = Field(description="The model's weights file.")
    status: ModelStatus
    architecture: ModelArchitecture
    capabilities: list[str] = Field(description="As GET /v1/models lists them: completion, chat, tools, vision ...")


class RouterModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[RouterModel]


class ModelRequest(BaseModel):
    model: str = ModelName("org/repo or org/repo:QUANT.", max_length=MAX_NAME)
    extra_args: list[str] | None = Field(None, description="llama-server's per-load flags; nexa ignores them "
                                                           "(per-model settings are nexa serve --model-option).")


class DownloadRequest(BaseModel):
    model: str = Field(description="A Hugging Face repo, org/repo or org/repo:QUANT (default quant if none).",
                       max_length=MAX_NAME, json_schema_extra=name_schema(HUB_NAME_PATTERN))


class Success(BaseModel):
    success: bool = True


class RouterProps(BaseModel):
    """GET /props without a model: the router itself. The UI reads `role` to show its model picker."""

    role: Literal["router"] = "router"
    max_instances: int = Field(description="Most models loaded at once (0: only the memory budget limits).")
    models_autoload: bool = Field(True, description="A request for a pulled model loads it.")
    build_info: str
    model_path: str = ""
    modalities: dict[str, bool] = Field(default_factory=lambda: {"vision": False, "audio": False, "video": False})
    cors_proxy_enabled: bool = False
    ui_settings: dict[str, Any] = Field(default_factory=dict)


class StreamLookup(BaseModel):
    conversation_ids: list[str] = Field(default_factory=list, max_length=1000)
