"""The store on disk: `<datadir>/models/<org>/<repo>/manifest.json` plus the weight files."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import ValidationError

from nexa.errors import ModelNotFound, StoreError
from nexa.store.manifest import FileEntry, Manifest
from nexa.store.names import ModelRef

MANIFEST = "manifest.json"
PULL_LOCK = ".pull.lock"  # held by a pull of the model for as long as it runs (nexa.hub.pull)
_MANIFEST_LOCK = ".manifest.lock"  # held around each read-change-write of the manifest


class Store:
    """Reads and writes manifests. Model names match case-insensitively, as on the Hub."""

    def __init__(self, root: Path):
        self.root = Path(root).expanduser()
        self.models_dir = self.root / "models"

    def model_dir(self, repo: str) -> Path:
        """The folder of `repo`, reusing an existing folder whose name differs only in case."""
        existing = self._find_dir(repo)
        return existing or self.models_dir / repo

    def _find_dir(self, repo: str) -> Path | None:
        org, _, name = repo.partition("/")
        exact = self.models_dir / org / name
        if org and name and "/" not in name and os.path.isdir(exact):  # the name as stored, as most requests give it
            return exact
        org, name = org.lower(), name.lower()
        if not self.models_dir.is_dir():
            return None
        for org_dir in self.models_dir.iterdir():
            if org_dir.name.lower() != org or not org_dir.is_dir():
                continue
            for repo_dir in org_dir.iterdir():
                if repo_dir.name.lower() == name and repo_dir.is_dir():
                    return repo_dir
        return None

    def list(self) -> list[Manifest]:
        """Every complete model, sorted by name; folders without a valid manifest are skipped."""
        manifests = []
        for path in sorted(self.models_dir.glob(f"*/*/{MANIFEST}")):
            manifest = self._read(path)
            if manifest is not None:
                manifests.append(manifest)
        return sorted(manifests, key=lambda m: m.name.lower())

    def get(self, repo: str) -> Manifest | None:
        folder = self._find_dir(repo)
        return self._read(folder / MANIFEST) if folder else None

    def resolve(self, ref: ModelRef) -> tuple[Manifest, str]:
        """The manifest and quant a request means; ModelNotFound tells how to pull what is missing."""
        manifest = self.get(ref.repo)
        if manifest is None:
            raise ModelNotFound(
                f"model '{ref}' is not pulled; run: nexa pull {ref}", param="model", code="model_not_found"
            )
        quant = ref.quant or manifest.default_quant()
        if quant not in manifest.quants:
            have = ", ".join(sorted(manifest.quants))
            raise ModelNotFound(
                f"model '{manifest.name}' has no quant {quant} (pulled: {have}); run: nexa pull {manifest.name}:{quant}",
                param="model",
                code="model_not_found",
            )
        return manifest, quant

    def save(self, manifest: Manifest) -> Path:
        """Write the manifest atomically (temp file + rename), so readers never see half of one."""
        folder = self.model_dir(manifest.name)
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".manifest.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(manifest.model_dump_json(indent=2))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, folder / MANIFEST)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return folder / MANIFEST

    def remove(self, ref: ModelRef) -> list[str]:
        """Remove a model or one of its quants; returns the removed quants. Never deletes imported files."""
        folder = self.model_dir(ref.repo)
        if not folder.is_dir():
            raise ModelNotFound(f"model '{ref.repo}' is not in the store; see: nexa list", param="model")
        with self.manifest_lock(folder):
            return self._remove(ref, folder)

    def _remove(self, ref: ModelRef, folder: Path) -> list[str]:
        manifest = self.get(ref.repo)
        if manifest is None:
            raise ModelNotFound(f"model '{ref.repo}' is not in the store; see: nexa list", param="model")
        if ref.quant is None or set(manifest.quants) == {ref.quant}:
            removed = sorted(manifest.quants)
            (folder / MANIFEST).unlink()
            if _pulling(folder):  # keep the pull's lock and partial files: it goes on, and writes its own quant
                for entry in manifest.files():
                    self._delete_owned(folder, entry)
                return removed
            shutil.rmtree(folder, ignore_errors=True)
            self._prune_empty(folder.parent)
            return removed
        if ref.quant not in manifest.quants:
            raise ModelNotFound(
                f"model '{manifest.name}' has no quant {ref.quant}; it has {', '.join(sorted(manifest.quants))}"
            )
        dropped = manifest.quants.pop(ref.quant)
        self.save(manifest)
        for entry in dropped.files:
            self._delete_owned(folder, entry)
        return [ref.quant]

    @staticmethod
    @contextmanager
    def manifest_lock(folder: Path) -> Iterator[None]:
        """Hold the model's manifest for one read-change-write: a pull that writes its quant and a remove
        of another quant then cannot undo each other's change."""
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / _MANIFEST_LOCK).open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def clean(self) -> list[str]:
        """Remove every model and every partial download; returns the models removed.

        Only the store's own folder goes: files imported with --local-path live elsewhere and stay.
        """
        if not self.models_dir.is_dir():
            return []
        names = sorted(str(p.parent.relative_to(self.models_dir)) for p in self.models_dir.glob(f"*/*/{MANIFEST}"))
        shutil.rmtree(self.models_dir)
        return names

    def size_on_disk(self, manifest: Manifest) -> int:
        """Bytes the store itself holds for a model (imported files live elsewhere and do not count)."""
        return sum(f.size for f in manifest.files() if not f.external)

    def _read(self, path: Path) -> Manifest | None:
        try:
            return Manifest.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValidationError) as exc:
            raise StoreError(f"{path} is unreadable ({exc.__class__.__name__}); remove that folder and pull again") from exc

    @staticmethod
    def _delete_owned(folder: Path, entry: FileEntry) -> None:
        if not entry.external:
            (folder / entry.name).unlink(missing_ok=True)

    def _prune_empty(self, org_dir: Path) -> None:
        if org_dir.is_dir() and not any(org_dir.iterdir()):
            org_dir.rmdir()


def _pulling(folder: Path) -> bool:
    """Whether a pull of the model in `folder` holds its lock now."""
    try:
        with (folder / PULL_LOCK).open("r") as handle:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False
    except FileNotFoundError:
        return False
    except BlockingIOError:
        return True
