"""`nexa ps`: the models a running server has loaded, read from its GET /v1/ps."""

from __future__ import annotations

import httpx
import typer
from rich.table import Table

from nexa.cli.common import console, human_size
from nexa.cli.remote import ApiKeyOpt, HostOpt, first_key, server_url
from nexa.errors import NexaError
from nexa.wire.admin import RunningModelList


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def fetch(url: str, api_key: str | None) -> RunningModelList:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(url + "/v1/ps", headers=headers, timeout=10)
    except httpx.TransportError as exc:
        raise NexaError(f"no nexa server answers at {url} ({exc.__class__.__name__}); "
                        "start one with `nexa serve`, or point --host at it") from exc
    if response.status_code != 200:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        raise NexaError(f"{url} answered {response.status_code}: {message}")
    return RunningModelList.model_validate(response.json())


def ps(
    host: HostOpt = None,
    api_key: ApiKeyOpt = None,
) -> None:
    """List the models a running `nexa serve` has loaded: memory, busy slots, idle time, keep-alive.

    Examples:
      nexa ps
      nexa ps --host 192.168.1.20:18181
    """
    url = server_url(host)
    running = fetch(url, first_key(api_key))
    budget = f"{human_size(running.memory_estimate)} of the {human_size(running.memory_budget)} memory budget" + "".join(
        f", {human_size(running.device_memory.get(name, 0))} of {human_size(size)} on {name}"
        for name, size in running.device_memory_budget.items()
    )
    if not running.data:
        console.print(f"No models loaded at {url} ({budget} in use); they load on their first request.")
        return
    table = Table(title=f"Loaded at {url} ({budget} estimated in use)", title_justify="left")
    gpus = bool(running.device_memory_budget)  # a GPU column only where a runtime has a GPU
    for column, justify in (("MODEL", "left"), ("TYPE", "left"), ("PID", "right"), ("MEMORY", "right"),
                            ("ESTIMATE", "right"), *([("GPU", "right")] if gpus else []), ("CONTEXT", "right"),
                            ("SLOTS BUSY", "right"),
                            ("QUEUED", "right"), ("IDLE", "right"), ("UNLOADS IN", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for model in running.data:
        busy = "?" if model.slots_busy is None else str(model.slots_busy)
        expires = "never" if model.keep_alive < 0 else _duration(model.expires_in)
        on_gpus = ", ".join(f"{human_size(size)} {name}" for name, size in model.device_memory.items()) or "-"
        table.add_row(
            model.id, model.type, str(model.pid or "-"), human_size(model.memory) if model.memory else "-",
            human_size(model.memory_estimate), *([on_gpus] if gpus else []), f"{model.ctx:,}",
            f"{busy}/{model.parallel}", str(model.queued),
            _duration(model.idle_seconds) if not model.in_flight else "serving", expires,
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command()(ps)
