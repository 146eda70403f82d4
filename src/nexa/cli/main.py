"""Entry point: builds the `nexa` command and renders nexa's errors without stack traces."""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from nexa import __version__
from nexa.cli import chat, launch as launch_cli, models, ps, runtime, serve
from nexa.cli.common import err_console
from nexa.cluster import launch
from nexa.errors import NexaError

app = typer.Typer(
    name="nexa",
    help="Pull GGUF models and serve them through an OpenAI-compatible API.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
models.register(app)
serve.register(app)
chat.register(app)
ps.register(app)
runtime.register(app)
launch_cli.register(app)


@app.command()
def version() -> None:
    """Print nexa's version."""
    print(__version__)


def _optional_values(argv: list[str]) -> list[str]:
    """`--ray` takes an optional address; Typer knows no optional option values, so a bare `--ray`
    (last, or before another option) gets its default here: a new local cluster."""
    out = []
    for i, word in enumerate(argv):
        out.append(word)
        if word == "--ray" and (i + 1 == len(argv) or argv[i + 1].startswith("-")):
            out.append(launch.LOCAL)
    return out


def main() -> None:
    try:
        app(args=_optional_values(sys.argv[1:]))
    except NexaError as exc:
        err_console.print(f"[red]error:[/] {escape(exc.message)}")
        raise SystemExit(1) from None
