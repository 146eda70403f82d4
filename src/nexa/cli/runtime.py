"""`nexa runtime build|list`: native llama-server runtimes for this machine."""

from __future__ import annotations

import time
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from nexa.cli.common import DataDirOpt, console, human_size
from nexa.config import default_datadir
from nexa.toolchain import build as native
from nexa.runtime.accelerators import accelerators
from nexa.runtime.cpu import feature_names
from nexa.runtime.runtimes import XLLAMACPP, installed, read_runtime, runtimes_dir

app = typer.Typer(help="Native llama-server runtimes: build one for this machine, list those installed.",
                  no_args_is_help=True)


class _RichReporter(native.Reporter):
    """Steps as lines, the compile as a bar of ninja's steps."""

    def __init__(self, progress: Progress):
        self._progress = progress
        self._task: int | None = None

    def step(self, text: str) -> None:
        if self._task is not None:  # the compile is over: ninja's last line may not have been its last step
            self._progress.update(self._task, completed=self._progress.tasks[self._task].total)
        self._progress.console.print(f"[bold]•[/] {text}")

    def progress(self, done: int, total: int) -> None:
        if self._task is None:
            self._task = self._progress.add_task("compiling", total=total)
        self._progress.update(self._task, completed=done, total=total)


@app.command("build")
def build_command(
    gpu: Annotated[str, typer.Option(
        help="GPU backend: auto (the one whose toolkit and device are present), cuda, vulkan, rocm or none.",
    )] = "auto",
    jobs: Annotated[Optional[int], typer.Option(help="Parallel compile jobs.", show_default="all cores")] = None,
    force: Annotated[bool, typer.Option("--force", help="Build even if this build is installed already.")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Compile llama-server for this machine from the pinned llama.cpp source and install it.

    It uses the instruction sets this CPU has and the OS enables (never AMX the kernel has not enabled),
    and CUDA, Vulkan or ROCm where its toolkit and a device are present. About 10-20 minutes on 2 cores;
    a second run compiles only what changed. `nexa serve` then uses it (--runtime auto). Examples:
      nexa runtime build
      nexa runtime build --gpu none --jobs 4
      nexa runtime build --force          # again, e.g. after a compiler upgrade
    """
    if gpu not in (*native.GPUS, "auto", "none"):
        raise typer.BadParameter(f"{gpu!r}: choose auto, cuda, vulkan, rocm or none", param_hint="--gpu")
    datadir = data_dir or default_datadir()
    plan = native.plan_for_machine(gpu)
    existing = read_runtime(runtimes_dir(datadir) / plan.name)
    if existing and not force:
        console.print(f"{existing.describe()} is installed already: {existing.binary} (--force rebuilds it)")
        return
    started = time.monotonic()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        runtime = native.build(datadir, plan, _RichReporter(progress), jobs=jobs)
    minutes, seconds = divmod(int(time.monotonic() - started), 60)
    console.print(f"[green]Installed[/] {runtime.describe()} in {minutes} min {seconds} s: {runtime.binary}")
    console.print("`nexa serve` uses it from now on (--runtime auto); --runtime xllamacpp goes back to the wheel.")


@app.command("list")
def list_command(data_dir: DataDirOpt = None) -> None:
    """Show the runtimes installed in the data directory; the first one this machine runs is what auto picks."""
    datadir = data_dir or default_datadir()
    found = installed(datadir)
    table = Table(Column("name", no_wrap=True), "llama.cpp", "CPU features", "GPU", "runs here")
    for runtime in found:
        runs = runtime.runs_here()  # a build for another CPU is not asked: it could die of SIGILL
        table.add_row(runtime.name, f"b{runtime.build}", " ".join(feature_names(runtime.cpu_options)) or "native",
                      _gpus(str(runtime.binary), runtime.gpu) if runs else runtime.gpu or "-", "yes" if runs else "no")
    table.add_row(XLLAMACPP, "(wheel)", "portable", _gpus(XLLAMACPP, None), "yes")
    console.print(table)
    if not found:
        console.print(f"No native runtime in {runtimes_dir(datadir)}: build one with [bold]nexa runtime build[/].")


def _gpus(runtime: str, built_for: str | None) -> str:
    """The GPUs a runtime reports it can use, with their memory (what the device-memory budget is sized by)."""
    found = [f"{gpu.name}: {gpu.description} ({human_size(gpu.total)})" for gpu in accelerators(runtime)]
    if found:
        return "\n".join(found)
    return f"{built_for} (no device visible)" if built_for else "-"


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="runtime")
