"""The web UI at `/`: llama.cpp's llama-ui, built by scripts/build_ui.py into `static/` (gzip-compressed).

One route per built file, so every other path keeps its API answers (404 and 405 in the API's shape).
Browsers get the gzip bytes as they are (`Content-Encoding: gzip`); a client that does not accept gzip
gets them decompressed as they are sent, in a thread.
"""

from __future__ import annotations

import gzip
import mimetypes
from collections.abc import Iterator
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Route

STATIC = Path(__file__).with_name("static")
# Hashed bundle names change with each build: a browser may keep them; the rest it must re-check.
_IMMUTABLE = "/_app/immutable/"
_CHUNK = 64 * 1024


def files() -> dict[str, Path]:
    """URL path → gzip file, for every file the build wrote; `/` is index.html."""
    found = {"/" + str(p.relative_to(STATIC))[: -len(".gz")]: p for p in sorted(STATIC.rglob("*.gz"))}
    if "/index.html" in found:
        found["/"] = found["/index.html"]
    return found


def public_paths() -> frozenset[str]:
    """The UI's paths: served without an API key, as /health is (the UI's own API calls still need one)."""
    return frozenset(files())


def install(app: FastAPI) -> None:
    """Serve the built UI, if this package has one (a source checkout may not have built it)."""
    for url_path, path in files().items():
        app.router.routes.append(
            Route(url_path, _endpoint(url_path, path), methods=["GET", "HEAD"], include_in_schema=False)
        )


def _endpoint(url_path: str, path: Path):  # noqa: ANN202 - a Starlette endpoint
    media_type = mimetypes.guess_type(path.name[: -len(".gz")])[0] or "application/octet-stream"
    cache = "public, max-age=31536000, immutable" if url_path.startswith(_IMMUTABLE) else "no-cache"

    async def serve(request: Request) -> Response:
        headers = {"Cache-Control": cache, "Vary": "Accept-Encoding"}
        if accepts_gzip(request.headers.get("accept-encoding", "")):
            return FileResponse(path, media_type=media_type, headers={**headers, "Content-Encoding": "gzip"})
        return StreamingResponse(_decompressed(path), media_type=media_type, headers=headers)

    return serve


def accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding header takes gzip: named or `*`, without q=0."""
    for part in header.split(","):
        name, _, params = part.partition(";")
        q = params.strip().lower().removeprefix("q=")
        if name.strip().lower() in ("gzip", "*") and not (q and q.replace(".", "").strip("0") == ""):
            return True
    return False


def _decompressed(path: Path) -> Iterator[bytes]:
    """A plain iterator: Starlette runs it in a thread, so decompressing stays off the event loop."""
    with gzip.open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            yield chunk
