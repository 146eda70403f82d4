"""Pull one quant of a Hub repo into the store: lock, check disk, download and verify, then write the manifest.

The manifest is written last, so a pull that stops half-way leaves no model behind, only partial
files that the next pull continues.
"""

from __future__ import annotations

import errno
import fcntl
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from nexa.errors import HubError, StoreError
from nexa.hub.download import download, fetch_prefix, present_bytes
from nexa.hub.resolve import RemoteFile, RepoFiles
from nexa.store import FileEntry, Manifest, ModelType, QuantEntry, Store
from nexa.store.gguf_meta import HeaderScan

LOCK_NAME = ".pull.lock"
_MAKE_ROOM = "free some space (nexa remove, nexa clean) or point NEXA_DATADIR at a bigger disk"


class PullEvents(Protocol):
    """What a pull tells its caller (the CLI draws progress bars from it)."""

    def waiting(self, repo: str) -> None: ...

    def file(self, name: str, size: int) -> Callable[[int], None]:
        """Called when a file starts; the returned callable gets the bytes done so far."""
        ...


def guess_type(files: RepoFiles) -> ModelType:
    """The model type to offer: a projector in the repo means vlm, else what the default quant's header says."""
    if files.mmprojs:
        return ModelType.vlm
    first = files.quants[files.default_quant()][0]
    scan = HeaderScan()
    header = fetch_prefix(files.repo, files.revision, first.name, enough=scan.feed)
    return scan.model_type(header) or ModelType.llm


def pull(store: Store, files: RepoFiles, quant: str, model_type: ModelType, events: PullEvents) -> tuple[Manifest, bool]:
    """Pull `quant` (and for a vlm its projector); returns (manifest, False when it was already there).
    A disk that fills up mid-way is a StoreError saying what to do; the partial files stay for the next pull."""
    folder = store.model_dir(files.repo)
    try:
        return _pull(store, files, quant, model_type, events, folder)
    except OSError as exc:
        raise _disk_error(folder, exc) from exc


def _pull(store: Store, files: RepoFiles, quant: str, model_type: ModelType, events: PullEvents,
          folder: Path) -> tuple[Manifest, bool]:
    folder.mkdir(parents=True, exist_ok=True)
    with _model_lock(folder, lambda: events.waiting(files.repo)):
        existing = store.get(files.repo)
        if existing is not None and quant in existing.quants:
            return existing, False
        wanted = list(files.quants[quant])
        mmproj = files.mmproj() if model_type is ModelType.vlm else None
        has_mmproj = existing is not None and existing.mmproj is not None
        if model_type is ModelType.vlm and mmproj is None and not has_mmproj:
            raise HubError(f"{files.repo} has no projector (mmproj) file, so it cannot be a vlm; "
                           "pull it as --model-type llm, or pull the vision model's own GGUF repo")
        if mmproj is not None and not has_mmproj:
            wanted.append(mmproj)
        with _DISK.reserve(folder, wanted) as wrote:
            entries = {f.name: _fetch(store, files, f, folder, events, wrote) for f in wanted}
        quants = dict(existing.quants) if existing else {}
        quants[quant] = QuantEntry(files=[entries[f.name] for f in files.quants[quant]])
        manifest = Manifest(
            name=existing.name if existing else files.repo,
            model_type=model_type,
            quants=quants,
            mmproj=entries[mmproj.name] if mmproj and mmproj.name in entries else (existing.mmproj if existing else None),
            source=f"hf:{files.repo}",
            system_prompt=existing.system_prompt if existing else None,
        )
        store.save(manifest)
        return manifest, True


def _fetch(store: Store, files: RepoFiles, remote: RemoteFile, folder: Path, events: PullEvents,
           wrote: Callable[[int], None]) -> FileEntry:
    target = folder / remote.name
    report = events.file(remote.name, remote.size)
    last = present_bytes(target)

    def on_progress(done: int) -> None:
        nonlocal last
        wrote(max(0, done - last))
        last = max(last, done)
        report(done)

    digest = download(files.repo, files.revision, remote.name, target,
                      size=remote.size, sha256=remote.sha256, on_progress=on_progress)
    return FileEntry(name=remote.name, size=remote.size, sha256=digest)


class _DiskReservations:
    """The bytes this process's pulls under way have still to write: each pull's disk check counts the
    others' (parallel pulls, each checked alone, overfilled the disk)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._left: dict[int, int] = {}

    @contextmanager
    def reserve(self, folder: Path, wanted: list[RemoteFile]) -> Iterator[Callable[[int], None]]:
        """Check that `wanted` fits beside the other pulls, and hold its bytes until the pull ends; yields
        the callable that the pull tells the bytes it wrote."""
        needed = sum(f.size - present_bytes(folder / f.name) for f in wanted)
        with self._lock:
            others = sum(self._left.values())
            free = shutil.disk_usage(folder).free - others
            if needed > free:
                raise StoreError(f"this pull needs {needed / 1e6:,.0f} MB more but {folder} has {max(free, 0) / 1e6:,.0f} "
                                 f"MB free{' beside the pulls under way' if others else ''}; {_MAKE_ROOM}")
            key = id(wanted)
            self._left[key] = needed

        def wrote(count: int) -> None:
            with self._lock:
                self._left[key] = max(0, self._left[key] - count)

        try:
            yield wrote
        finally:
            with self._lock:
                del self._left[key]


_DISK = _DiskReservations()


def _disk_error(folder: Path, exc: OSError) -> StoreError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(f"the disk holding {folder} filled up during the pull; {_MAKE_ROOM}, "
                          "then run the same nexa pull again to resume")
    return StoreError(f"cannot write {exc.filename or folder} ({exc.strerror}); check that NEXA_DATADIR is "
                      "writable, then run the same nexa pull again to resume")


@contextmanager
def _model_lock(folder: Path, on_wait: Callable[[], None]) -> Iterator[None]:
    """One pull per model at a time; a second waits (and then finds the files there) instead of racing."""
    with (folder / LOCK_NAME).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait()
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
