"""`nexa pull`: from Hugging Face (prompts on a terminal, flags for scripts) or from a local path."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.prompt import Prompt

from nexa.cli.common import DataDirOpt, console, human_size, open_store
from nexa.errors import HubError
from nexa.store import Manifest, ModelRef, ModelType, Store
from nexa.store.importer import import_local

if TYPE_CHECKING:
    from nexa.hub.resolve import RepoFiles

ModelTypeOpt = Annotated[
    Optional[ModelType],
    typer.Option("--model-type", "-t", help="llm, vlm, embedder or reranker; detected when omitted."),
]


def pull(
    name: Annotated[str, typer.Argument(help="org/repo or org/repo:QUANT, as on Hugging Face (a full URL works too).")],
    quant: Annotated[Optional[str], typer.Option("--quant", "-q", help="Quant to pull, e.g. Q4_K_M (same as :QUANT).")] = None,
    model_type: ModelTypeOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Accept the defaults instead of asking.")] = False,
    local_path: Annotated[
        Optional[Path], typer.Option("--local-path", help="Import a .gguf file or a folder of them, without copying.")
    ] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Get a model into the store, from Hugging Face or from disk.

    On a terminal it asks for the model type and the quant; otherwise it takes the defaults (Q4_K_M, then Q4_0, then Q8_0, then the smallest). An interrupted pull resumes.

    Gated or private repos need HF_TOKEN (or NEXA_HFTOKEN); HF_ENDPOINT selects a mirror.

    Examples:
      nexa pull ggml-org/Qwen3-1.7B-GGUF
      nexa pull ggml-org/Qwen3-1.7B-GGUF:Q8_0 --model-type llm
      nexa pull my-org/my-model --local-path ~/models/my-model-Q4_K_M.gguf
    """
    ref = ModelRef.parse(name)
    if quant:
        ref = ModelRef(ref.repo, quant.upper())
    store = open_store(data_dir)
    if local_path is not None:
        manifest = import_local(store, ref, local_path, model_type)
        quants = ", ".join(sorted(manifest.quants))
        console.print(f"[green]✓[/] {manifest.name} ({manifest.model_type.value}; {quants}) imported from {local_path}")
        return
    _pull_from_hub(store, ref, model_type, yes)


def _pull_from_hub(store: Store, ref: ModelRef, model_type: ModelType | None, yes: bool) -> None:
    """List the repo, settle type and quant (flag, prompt or default), then download with progress bars."""
    from nexa.hub import pull as hub_pull  # on use: huggingface_hub slows every other nexa command
    from nexa.hub.resolve import list_repo

    existing = store.get(ref.repo)
    if existing is not None and ref.quant in existing.quants:
        _already(existing, ref.quant)
        return
    with console.status(f"listing {ref.repo} on Hugging Face"):
        files = list_repo(ref.repo)
    chooser = _Chooser(interactive=not yes and sys.stdin.isatty() and sys.stdout.isatty())
    chosen_type = model_type or (existing.model_type if existing else chooser.model_type(files))
    chosen_quant = ref.quant or chooser.quant(files)
    if chosen_quant not in files.quants:
        raise HubError(f"{files.repo} has no quant {chosen_quant}; it has {', '.join(sorted(files.quants))}")
    if existing is not None and chosen_quant in existing.quants:
        _already(existing, chosen_quant)
        return
    if chooser.defaulted and not yes:
        console.print(
            f"No terminal to ask on: using {', '.join(chooser.defaulted)} "
            "(choose with --model-type and --quant, or pass --yes to accept defaults quietly)"
        )
    try:
        with _ProgressEvents() as events:
            manifest, fetched = hub_pull.pull(store, files, chosen_quant, chosen_type, events)
    except KeyboardInterrupt:
        raise HubError("interrupted; run the same nexa pull again to continue where it stopped") from None
    if not fetched:
        _already(manifest, chosen_quant)
        return
    size = human_size(manifest.quants[chosen_quant].size)
    console.print(f"[green]✓[/] pulled {manifest.name}:{chosen_quant} ({manifest.model_type.value}, {size}); "
                  "try: nexa serve")


def _already(manifest: Manifest, quant: str) -> None:
    console.print(f"{manifest.name}:{quant} is already pulled; nothing to do (nexa show {manifest.name})")


class _Chooser:
    """Asks on a terminal; elsewhere takes each default and remembers which, to say so."""

    def __init__(self, interactive: bool):
        self.interactive = interactive
        self.defaulted: list[str] = []

    def model_type(self, files: RepoFiles) -> ModelType:
        from nexa.hub.pull import guess_type

        with console.status("reading the model header"):
            default = guess_type(files)
        names = [t.value for t in ModelType]
        if not self.interactive:
            self.defaulted.append(f"model type {default.value}")
            return default
        return ModelType(Prompt.ask("Model type", choices=names, default=default.value, console=console))

    def quant(self, files: RepoFiles) -> str:
        default = files.default_quant()
        if len(files.quants) == 1:
            return default
        if not self.interactive:
            self.defaulted.append(f"quant {default}")
            return default
        options = sorted(files.quants, key=lambda q: (files.size(q), q))
        for number, quant in enumerate(options, 1):
            mark = "  [bold](default)[/]" if quant == default else ""
            console.print(f"  {number:>2}. {quant:<10} {human_size(files.size(quant)):>9}{mark}")
        by_number = {str(n): q for n, q in enumerate(options, 1)}
        choices = list(by_number) + options + [q.lower() for q in options]
        answer = Prompt.ask("Select quant version (number or name)", choices=choices,
                            default=str(options.index(default) + 1), console=console, show_choices=False)
        return by_number.get(answer, answer.upper())


class _ProgressEvents:
    """Rich progress bars, one per file: bytes, speed and time left."""

    def __init__(self) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TimeRemainingColumn(), console=console,
        )

    def __enter__(self) -> _ProgressEvents:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def waiting(self, repo: str) -> None:
        self._progress.console.print(f"another nexa pull of {repo} is running; waiting for it to finish")

    def file(self, name: str, size: int) -> Callable[[int], None]:
        task = self._progress.add_task(name, total=size)
        return lambda done: self._progress.update(task, completed=done)


def register(app: typer.Typer) -> None:
    app.command()(pull)

