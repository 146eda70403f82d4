"""`nexa serve`: the HTTP server."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.logging import RichHandler

from nexa.cli.common import console, human_size
from nexa.cluster import launch
from nexa.config import Settings, load_settings
from nexa.store import ModelRef, Store

_FIELDS = Settings.model_fields


_SHOWN_DEFAULTS = {
    "threads": "all cores", "datadir": "~/.cache/nexa", "api_keys": "none", "origins": "localhost origins",
    "max_body": "32 MiB", "media_root": "none",
    "ctx": "trained length, fitted to the memory budget", "prompt_cache": "the KV cache's size, if the budget has room", "memory_budget": "75% of RAM", "device_memory_budget": "90% of each GPU", "preload": "none", "model_options": "none",
}


def _help(field: str) -> str:
    env = _FIELDS[field].validation_alias or f"NEXA_{field.upper()}"
    return f"{_FIELDS[field].description} [env: {env}]"


def _default(field: str) -> str:
    return _SHOWN_DEFAULTS.get(field) or str(_FIELDS[field].default)


def serve(
    host: Annotated[Optional[str], typer.Option(help=_help("host"), show_default=_default("host"))] = None,
    port: Annotated[Optional[int], typer.Option(help=_help("port"), show_default=_default("port"))] = None,
    ctx: Annotated[Optional[int], typer.Option(help=_help("ctx"), show_default=_default("ctx"))] = None,
    parallel: Annotated[Optional[int], typer.Option(help=_help("parallel"), show_default=_default("parallel"))] = None,
    kv_cache_type: Annotated[
        Optional[str], typer.Option(help=_help("kv_cache_type"), show_default=_default("kv_cache_type"))
    ] = None,
    prompt_cache: Annotated[
        Optional[str], typer.Option(help=_help("prompt_cache"), show_default=_default("prompt_cache"))
    ] = None,
    prompt_cache_disk: Annotated[
        Optional[str], typer.Option(help=_help("prompt_cache_disk"), show_default="2 GiB")
    ] = None,
    threads: Annotated[Optional[int], typer.Option(help=_help("threads"), show_default=_default("threads"))] = None,
    ngl: Annotated[Optional[int], typer.Option(help=_help("ngl"), show_default=_default("ngl"))] = None,
    runtime: Annotated[Optional[str], typer.Option(help=_help("runtime"), show_default=_default("runtime"))] = None,
    reasoning_format: Annotated[
        Optional[str], typer.Option(help=_help("reasoning_format"), show_default=_default("reasoning_format"))
    ] = None,
    load_timeout: Annotated[
        Optional[float], typer.Option(help=_help("load_timeout"), show_default=_default("load_timeout"))
    ] = None,
    log_level: Annotated[Optional[str], typer.Option(help=_help("log_level"), show_default=_default("log_level"))] = None,
    ui: Annotated[Optional[bool], typer.Option("--ui/--no-ui", help=_help("ui"), show_default=_default("ui"))] = None,
    data_dir: Annotated[
        Optional[Path], typer.Option("--data-dir", help=_help("datadir"), show_default=_default("datadir"))
    ] = None,
    api_key: Annotated[
        Optional[list[str]], typer.Option("--api-key", help=_help("api_keys"), show_default=_default("api_keys"))
    ] = None,
    origins: Annotated[
        Optional[list[str]], typer.Option(help=_help("origins") + " Repeatable.", show_default=_default("origins"))
    ] = None,
    max_body: Annotated[Optional[int], typer.Option(help=_help("max_body"), show_default=_default("max_body"))] = None,
    body_timeout: Annotated[
        Optional[float], typer.Option(help=_help("body_timeout"), show_default=_default("body_timeout"))
    ] = None,
    media_root: Annotated[
        Optional[list[Path]], typer.Option(help=_help("media_root"), show_default=_default("media_root"))
    ] = None,
    allow_private_urls: Annotated[
        Optional[bool], typer.Option("--allow-private-urls", help=_help("allow_private_urls"), show_default=False)
    ] = None,
    max_audio_seconds: Annotated[
        Optional[float], typer.Option(help=_help("max_audio_seconds"), show_default=_default("max_audio_seconds"))
    ] = None,
    keepalive: Annotated[Optional[float], typer.Option(help=_help("keepalive"), show_default=_default("keepalive"))] = None,
    memory_budget: Annotated[
        Optional[str], typer.Option(help=_help("memory_budget"), show_default=_default("memory_budget"))
    ] = None,
    device_memory_budget: Annotated[
        Optional[str],
        typer.Option(help=_help("device_memory_budget"), show_default=_default("device_memory_budget")),
    ] = None,
    max_loaded_models: Annotated[
        Optional[int], typer.Option(help=_help("max_loaded_models"), show_default=_default("max_loaded_models"))
    ] = None,
    max_queue: Annotated[Optional[int], typer.Option(help=_help("max_queue"), show_default=_default("max_queue"))] = None,
    max_waiting: Annotated[
        Optional[int], typer.Option(help=_help("max_waiting"), show_default=_default("max_waiting"))
    ] = None,
    queue_timeout: Annotated[
        Optional[float], typer.Option(help=_help("queue_timeout"), show_default=_default("queue_timeout"))
    ] = None,
    route_load_threshold: Annotated[
        Optional[int], typer.Option(help=_help("route_load_threshold"), show_default=_default("route_load_threshold"))
    ] = None,
    preload: Annotated[
        Optional[list[str]], typer.Option(help=_help("preload") + " Repeatable.", show_default=_default("preload"))
    ] = None,
    model_option: Annotated[
        Optional[list[str]],
        typer.Option("--model-option", help=_help("model_options") + " Repeatable.", show_default=_default("model_options")),
    ] = None,
    ray: Annotated[
        Optional[str],
        typer.Option(
            "--ray", metavar="[ADDRESS]",
            help="Serve on a Ray cluster: alone (or 'local'), a new one on this machine; 'auto' or "
            "ray://host:10001 an existing one. "
            "Needs pip install 'nexa\\[ray]'.",
        ),
    ] = None,
) -> None:
    """Serve the pulled models through an OpenAI-compatible API (default http://127.0.0.1:18181).

    Models load on their first request. Examples:
      nexa serve
      nexa serve --port 8080 --ctx 8192 --parallel 2
      nexa serve --preload HuggingFaceTB/SmolLM2-135M-Instruct --keepalive 600 --memory-budget 12GiB
      nexa serve --model-option org/big-model:ctx=16384,parallel=1 --model-option org/embedder:ngl=0
      nexa serve --kv-cache-type q8_0 --model-option org/long-model:ctx=131072,kv_cache_type=q4_0
      nexa serve --runtime xllamacpp --model-option org/big-model:runtime=auto
      nexa serve --host 0.0.0.0 --api-key "$(openssl rand -hex 24)" --media-root ~/pictures
      nexa serve --ray auto --model-option org/model:replicas=2,num_cpus=4,resource.big_node=1
    """
    flags: dict[str, Any] = dict(
        host=host, port=port, ctx=ctx, parallel=parallel, kv_cache_type=kv_cache_type, prompt_cache=prompt_cache,
        prompt_cache_disk=prompt_cache_disk,
        threads=threads, ngl=ngl, runtime=runtime,
        reasoning_format=reasoning_format, load_timeout=load_timeout, log_level=log_level, ui=ui, datadir=data_dir,
        api_keys=api_key, origins=origins, max_body=max_body, body_timeout=body_timeout, media_root=media_root,
        allow_private_urls=allow_private_urls, max_audio_seconds=max_audio_seconds, keepalive=keepalive, memory_budget=memory_budget,
        device_memory_budget=device_memory_budget,
        max_loaded_models=max_loaded_models, max_queue=max_queue, max_waiting=max_waiting, queue_timeout=queue_timeout,
        route_load_threshold=route_load_threshold, preload=preload,
        model_options=model_option,
    )
    settings = load_settings(**flags)
    if ray is not None:
        launch.require_ray()  # before anything else is said: without the extra, nothing would follow
    _setup_logging(settings.log_level)
    store = Store(settings.datadir)
    bind_host, bind_port = settings.bind()
    names = [m.name for m in store.list()]
    console.print(
        f"[bold]nexa[/] serving {len(names)} model{'s' if len(names) != 1 else ''} from {store.root} "
        f"on [cyan]http://{bind_host}:{bind_port}[/] (API docs at /docs)"
    )
    _announce_runtimes(settings)
    _check_drafts(settings, store)
    if settings.ui:
        console.print(f"Chat in the browser: [cyan]http://{_url_host(bind_host)}:{bind_port}/[/]")
    if not settings.loopback() and not settings.api_keys:
        console.print(
            f"[bold yellow]Warning:[/] {bind_host} is reachable from other machines and no API key is set: "
            "anyone on the network can use these models. Start with --api-key KEY (or NEXA_API_KEY), "
            "or bind to 127.0.0.1."
        )
    if not names:
        console.print("No models yet: run [bold]nexa starter[/] or [bold]nexa pull org/repo[/] in another terminal.")
    if ray is not None:
        console.print(f"Models run as Ray Serve deployments on the cluster at {ray}")
        launch.run(settings, ray)
        return
    from nexa.runtime import ModelManager  # on use: the server stack slows every other nexa command
    from nexa.server import serving

    serving.run(ModelManager(store, settings), settings)


def _announce_runtimes(settings: Settings) -> None:
    """Say what runs the models, and stop now on a runtime that cannot run here (not at a model's first load)."""
    from nexa.runtime.accelerators import accelerators
    from nexa.runtime.memory import device_budget
    from nexa.runtime.runtimes import check_runs, describe, resolve

    chosen = {"": settings.runtime} | {name: o.runtime for name, o in settings.model_options.items() if o.runtime}
    for name, choice in chosen.items():
        runtime = resolve(choice, settings.datadir)
        check_runs(runtime)
        console.print(f"{name + ' runs' if name else 'Models run'} on {describe(runtime)}")
        for gpu in accelerators(runtime):  # asked now, so a model's first load does not wait for it
            budget = device_budget(gpu.total, settings.device_memory_budget)
            console.print(f"  GPU {gpu.name}: {gpu.description}, {human_size(gpu.total)} "
                          f"({human_size(budget)} for models: --device-memory-budget)")


def _check_drafts(settings: Settings, store: Store) -> None:
    """A draft model that is not pulled stops the start with the pull command, not a model's first load."""
    for name, options in settings.model_options.items():
        if options.draft and "/" in options.draft:
            store.resolve(ModelRef.parse(options.draft))
        if options.draft:
            console.print(f"{name} decodes speculatively, drafting with {options.draft}")


def _url_host(host: str) -> str:
    """The address to put in a URL: a wildcard bind is reached at localhost, an IPv6 one in brackets."""
    if host in ("0.0.0.0", "::", ""):
        return "localhost"
    return f"[{host}]" if ":" in host else host


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(name)s: %(message)s", datefmt="[%X]",
        handlers=[RichHandler(console=console, show_path=False, rich_tracebacks=True)],
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per worker call is noise
    # A stream's last chunks may still be in flight when its client leaves; asyncio warns for each.
    logging.getLogger("asyncio").addFilter(lambda record: "socket.send() raised exception" not in record.getMessage())


def register(app: typer.Typer) -> None:
    app.command()(serve)
