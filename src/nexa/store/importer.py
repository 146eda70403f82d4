"""Bring GGUF files already on disk into the store without copying them."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

from nexa.errors import StoreError
from nexa.store.gguf_meta import read_info
from nexa.store.manifest import FileEntry, Manifest, ModelType, QuantEntry
from nexa.store.names import ModelRef
from nexa.store.quant import is_mmproj_name, parse_quant, shard_group, shard_info
from nexa.store.store import Store

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(path: Path, *, external: bool) -> FileEntry:
    path = path.resolve()
    return FileEntry(
        name=path.name,
        size=path.stat().st_size,
        sha256=sha256_file(path),
        path=str(path) if external else None,
    )


def _gguf_files(source: Path) -> list[Path]:
    if source.is_file():
        if source.suffix.lower() != ".gguf":
            raise StoreError(f"{source} is not a .gguf file")
        return [source]
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() == ".gguf")
        if files:
            return files
        raise StoreError(f"{source} holds no .gguf files")
    raise StoreError(f"{source} does not exist")


def _is_projector(path: Path) -> bool:
    return is_mmproj_name(path.name) or read_info(path).is_projector


def _group_quants(weights: list[Path]) -> dict[str, list[Path]]:
    """Quant name → files, shards of one split model kept together in order."""
    groups: dict[str, list[Path]] = defaultdict(list)
    for path in weights:
        quant = parse_quant(shard_group(path.name)) or read_info(path).quant
        groups[quant].append(path)
    for quant, files in groups.items():
        files.sort(key=lambda p: (shard_info(p.name) or (1, 1))[0])
        expected = shard_info(files[0].name)
        if expected and len(files) != expected[1]:
            raise StoreError(f"quant {quant} is split into {expected[1]} files but {len(files)} were found")
    return groups


def import_local(
    store: Store, ref: ModelRef, source: Path, model_type: ModelType | None = None
) -> Manifest:
    """Record the GGUF files at `source` (a file or a folder) as model `ref`, adding to an existing manifest."""
    source = source.expanduser()
    files = _gguf_files(source)
    projectors = [p for p in files if _is_projector(p)]
    weights = [p for p in files if p not in projectors]
    if not weights:
        raise StoreError(f"{source} holds only projector files; add the model's own .gguf")
    groups = _group_quants(weights)
    if ref.quant and len(groups) == 1:
        groups = {ref.quant: next(iter(groups.values()))}
    elif ref.quant:
        if ref.quant not in groups:
            raise StoreError(f"{source} has no quant {ref.quant}; it has {', '.join(sorted(groups))}")
        groups = {ref.quant: groups[ref.quant]}

    existing = store.get(ref.repo)
    quants = dict(existing.quants) if existing else {}
    quants.update(
        {q: QuantEntry(files=[file_entry(p, external=True) for p in paths]) for q, paths in groups.items()}
    )
    mmproj = file_entry(max(projectors, key=lambda p: p.stat().st_size), external=True) if projectors else None
    mmproj = mmproj or (existing.mmproj if existing else None)
    detected = read_info(next(iter(groups.values()))[0]).detect_type(has_mmproj=mmproj is not None)
    manifest = Manifest(
        name=existing.name if existing else ref.repo,
        model_type=model_type or detected,
        quants=quants,
        mmproj=mmproj,
        source=f"local:{source.resolve()}",
        system_prompt=existing.system_prompt if existing else None,
    )
    store.save(manifest)
    return manifest
