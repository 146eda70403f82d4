"""nexa's own admin API: the loaded models (`GET /v1/ps`, `nexa ps`), loading and unloading them, and health."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from nexa.wire.names import ModelName
from nexa.wire.openai import KeepAlive, StrictBase


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Replica(BaseModel):
    """One replica of a model on a Ray cluster (`nexa serve --ray`)."""

    replica: str = Field(description="Ray Serve's replica id.")
    state: str = Field(description="Ray's actor state: ALIVE, PENDING_CREATION, RESTARTING ...")
    node: str | None = Field(description="The Ray node it runs on.")
    pid: int | None = Field(description="The replica's process on that node.")
    load: int = Field(0, description="Requests the router has in flight on it.")
    cached_prefixes: int = Field(0, description="Prompt blocks the router believes it holds (512 bytes of request each).")


class RunningModel(BaseModel):
    """A loaded model, as `GET /v1/ps` and `nexa ps` show it."""

    id: str = Field(description="org/repo:QUANT")
    type: str = Field(description="llm, vlm, embedder or reranker.")
    pid: int | None = Field(description="The worker process.")
    memory: int | None = Field(description="Resident memory of the worker (RSS) in bytes; null where unknown.")
    memory_estimate: int = Field(
        description="Bytes of RAM the memory budget counts for it: what its engine reported allocating, else the estimate."
    )
    device_memory: dict[str, int] = Field(
        default_factory=dict, description="Bytes it holds on each GPU (CUDA0 ...), as its engine reported; empty on CPU."
    )
    ctx: int = Field(description="Context tokens, shared by its slots: one request may use all of them.")
    parallel: int = Field(description="Slots: requests it generates for at once.")
    slots_busy: int | None = Field(description="Slots generating now, as the engine reports; null if it did not answer.")
    in_flight: int = Field(description="Requests being served, queued ones included.")
    queued: int = Field(description="Requests waiting for a free slot.")
    idle_seconds: float = Field(description="Seconds since its last request ended; 0 while serving.")
    keep_alive: float = Field(description="Seconds it stays loaded once idle; negative: until unloaded.")
    expires_in: float | None = Field(description="Seconds until keep-alive unloads it; null while serving or kept.")
    loaded_at: int = Field(description="Unix time it finished loading.")
    replicas: list[Replica] | None = Field(
        None, description="On a Ray cluster, its replicas and their nodes (it may have none while scaled to zero)."
    )


class RunningModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[RunningModel]
    memory_budget: int = Field(description="The --memory-budget, in bytes.")
    memory_estimate: int = Field(description="RAM loaded models (and loads under way) take, by the budget's count.")
    device_memory_budget: dict[str, int] = Field(
        default_factory=dict, description="Each GPU's budget in bytes (--device-memory-budget); empty without a GPU."
    )
    device_memory: dict[str, int] = Field(default_factory=dict, description="What models take on each GPU.")


class LoadRequest(StrictBase):
    model: str = ModelName("Store name: org/repo or org/repo:QUANT.")
    keep_alive: KeepAlive


class UnloadRequest(StrictBase):
    model: str = ModelName("Store name: org/repo or org/repo:QUANT.")


class UnloadResult(BaseModel):
    id: str
    status: Literal["unloaded", "not_loaded", "unloading"] = Field(
        description="'unloading': it is serving requests and unloads when they end."
    )
