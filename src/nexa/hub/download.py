"""Download one Hub file into the store, continuing a partial file, and refuse bytes that fail their sha256.

This is the one thin layer nexa owns: from huggingface_hub 1.0 on, a failed download's partial file is
deleted, so a second `nexa pull` would start a many-GB file from zero. Here the partial file is
`<name>.incomplete` beside its final place, continued with an HTTP Range request, and renamed only
once its sha256 matches the one the Hub lists.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import httpx

from nexa.errors import HubError
from nexa.hub import hf
from nexa.store.importer import sha256_file

PARTIAL_SUFFIX = ".incomplete"
PREFIX_LIMIT = 64 << 20  # far above any real GGUF header (a 250k-token vocabulary is about 10 MB)
_CHUNK = 1 << 20
_ATTEMPTS = 3  # a dropped connection is retried from where it stopped before giving up
_TIMEOUT = httpx.Timeout(30.0, read=120.0)


def partial_path(target: Path) -> Path:
    return target.with_name(target.name + PARTIAL_SUFFIX)


def present_bytes(target: Path) -> int:
    """Bytes of `target` already on disk, complete or partial (what a pull need not download again)."""
    for path in (target, partial_path(target)):
        if path.is_file():
            return path.stat().st_size
    return 0


def download(
    repo: str, revision: str, name: str, target: Path, *, size: int, sha256: str | None,
    on_progress: Callable[[int], None],
) -> str:
    """Put file `name` of `repo` at `target`; returns its verified sha256. Reports bytes done to `on_progress`."""
    if target.is_file() and target.stat().st_size == size:
        digest = sha256_file(target)
        if sha256 in (None, digest):
            on_progress(size)
            return digest
        target.unlink()
    partial = partial_path(target)
    partial.parent.mkdir(parents=True, exist_ok=True)
    url = hf.file_url(repo, revision, name)
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            _fetch_rest(url, repo, partial, size, on_progress)
            break
        except httpx.TransportError as exc:
            if attempt == _ATTEMPTS:
                done = partial.stat().st_size if partial.exists() else 0
                raise HubError(
                    f"download of {name} stopped at {done} of {size} bytes ({exc.__class__.__name__}); "
                    "run the same nexa pull again to resume"
                ) from exc
    return _verify_and_place(partial, target, name, size, sha256)


def fetch_prefix(repo: str, revision: str, name: str, enough: Callable[[bytes], bool],
                 limit: int = PREFIX_LIMIT) -> bytes:
    """The first bytes of a file (a ranged request), read until `enough` says so or `limit` bytes,
    to read its header before downloading it all."""
    headers = {**hf.auth_headers(), "Range": f"bytes=0-{limit - 1}"}
    try:
        with httpx.stream("GET", hf.file_url(repo, revision, name), headers=headers,
                          follow_redirects=True, timeout=_TIMEOUT) as response:
            if response.status_code >= 400:
                raise hf.access_error(repo, response.status_code)
            data = bytearray()
            for chunk in response.iter_bytes(_CHUNK):
                data += chunk
                if len(data) >= limit or enough(data):  # a server that ignores Range sends everything
                    break
            return bytes(data[:limit])
    except httpx.TransportError as exc:
        raise HubError(f"cannot reach {hf.endpoint()} ({exc}); check your network, or HF_ENDPOINT") from exc


def _fetch_rest(url: str, repo: str, partial: Path, size: int, on_progress: Callable[[int], None]) -> None:
    offset = partial.stat().st_size if partial.exists() else 0
    if offset > size:  # not a prefix of this file (the repo changed): start over
        partial.unlink()
        offset = 0
    on_progress(offset)
    if offset == size:
        return
    headers = hf.auth_headers()
    if offset:
        headers["Range"] = f"bytes={offset}-"
    with httpx.stream("GET", url, headers=headers, follow_redirects=True, timeout=_TIMEOUT) as response:
        if response.status_code == 416:  # the file on the Hub is not what the partial one was part of
            partial.unlink()
            raise HubError(f"{partial.name} no longer matches the file on the Hub; it was deleted, run nexa pull again")
        if response.status_code >= 400:
            raise hf.access_error(repo, response.status_code)
        resumed = response.status_code == 206
        if resumed and not response.headers.get("content-range", "").startswith(f"bytes {offset}-"):
            raise HubError(f"{url} answered a different byte range than asked; run nexa pull again")
        done = offset if resumed else 0  # a server that ignores Range sends the whole file again
        with partial.open("ab" if resumed else "wb") as out:
            for chunk in response.iter_bytes(_CHUNK):
                out.write(chunk)
                done += len(chunk)
                on_progress(done)
            out.flush()
            os.fsync(out.fileno())  # on disk before the manifest names it: a power cut leaves no torn model


def _verify_and_place(partial: Path, target: Path, name: str, size: int, sha256: str | None) -> str:
    got = partial.stat().st_size
    if got != size:
        partial.unlink()
        raise HubError(f"{name} arrived with {got} bytes instead of {size}; it was deleted, run nexa pull again")
    digest = sha256_file(partial)
    if sha256 is not None and digest != sha256:
        partial.unlink()
        raise HubError(
            f"{name} is corrupt: its sha256 is {digest}, the Hub lists {sha256}; "
            "the download was deleted, run nexa pull again (if it repeats, the repo or mirror is broken)"
        )
    os.replace(partial, target)
    return digest
