"""How client commands (`nexa run`, `nexa ps`) find a running server and its key."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from nexa.config import load_settings

HostOpt = Annotated[
    Optional[str],
    typer.Option(envvar="NEXA_HOST", help="Server: HOST, HOST:PORT or a URL.", show_default="127.0.0.1:18181"),
]
ApiKeyOpt = Annotated[
    Optional[str], typer.Option(envvar="NEXA_API_KEY", help="The server's API key, if it has one.")
]


def server_url(host: str | None) -> str:
    """The URL of the server to use: --host or NEXA_HOST (HOST or HOST:PORT, or a full http(s) URL)."""
    if host and host.startswith(("http://", "https://")):
        return host
    bind_host, port = load_settings(host=host).bind()
    if bind_host in ("", "0.0.0.0", "::"):  # listening everywhere: reach it on loopback
        bind_host = "127.0.0.1"
    return f"http://[{bind_host}]:{port}" if ":" in bind_host else f"http://{bind_host}:{port}"


def first_key(keys: str | None) -> str | None:
    """NEXA_API_KEY may list several keys for the server (comma-separated); a client sends one."""
    return keys.split(",")[0].strip() if keys else None
