"""Entry point: builds the `nexa` command and renders nexa's errors without stack traces."""

from __future__ import annotations

import typer

from nexa import __version__
from nexa.cli import chat, models, ps, runtime, serve
from nexa.cli.common import err_console
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


@app.command()
def version() -> None:
    """Print nexa's version."""
    print(__version__)


def main() -> None:
    try:
        app()
    except NexaError as exc:
        err_console.print(f"[red]error:[/] {exc.message}")
        raise SystemExit(1) from None
