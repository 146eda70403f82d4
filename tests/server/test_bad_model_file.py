"""One bad GGUF in the store (arrays nested deeper than Python's stack) breaks neither its own header
walk nor the listing of the other models (issue 21, item 9)."""

from __future__ import annotations

import struct
from pathlib import Path

import httpx

from nexa.errors import BadModelFile
from nexa.store import FileEntry, Manifest, ModelType, QuantEntry, Store
from nexa.store.gguf_meta import read_info, read_prefix_kv
from tests.conftest import ServerProcess, import_tiny

GOOD = "test/qwen3-text"


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def deeply_nested(path: Path, depth: int = 100_000) -> Path:
    """A GGUF header whose one array holds an array holding an array... `depth` times."""
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, 2) + _string("general.architecture") + struct.pack("<I", 8)
    header += _string("llama") + _string("evil.nested") + struct.pack("<I", 9)
    path.write_bytes(header + struct.pack("<IQ", 9, 1) * depth + struct.pack("<IQ", 4, 0))
    return path


def test_nested_arrays_are_walked_without_recursion(tmp_path):
    path = deeply_nested(tmp_path / "deep.gguf")
    assert read_prefix_kv(path.read_bytes()) == {"general.architecture": "llama", "evil.nested": 1}
    try:
        read_info(path)
    except BadModelFile as exc:
        assert "nests arrays" in str(exc)


def test_one_bad_file_does_not_break_the_listings(tmp_path, tiny_dir):
    store = Store(tmp_path / "data")
    import_tiny(store, tiny_dir, GOOD, ["qwen3-script-text.gguf"], None)
    bad = deeply_nested(tmp_path / "deep-Q4_0.gguf")
    entry = FileEntry(name=bad.name, size=bad.stat().st_size, sha256="0" * 64, path=str(bad))
    store.save(Manifest(name="evil/deep", model_type=ModelType.llm, quants={"Q4_0": QuantEntry(files=[entry])},
                        source="test"))
    server = ServerProcess(store.root)
    try:
        for path, key, field in (("/v1/models", "data", "id"), ("/models", "data", "id"), ("/api/tags", "models", "name")):
            answer = httpx.get(server.base_url + path, timeout=30)
            assert answer.status_code == 200, (path, answer.text)
            assert any(GOOD in m[field] for m in answer.json()[key]), (path, answer.text)
    finally:
        server.stop()
