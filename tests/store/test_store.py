import json
import shutil
from pathlib import Path

import pytest

from nexa.errors import InvalidRequest, ModelNotFound, StoreError
from nexa.store import ModelRef, ModelType, Store
from nexa.store.importer import import_local


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "data")


def test_model_names_parse_with_optional_quant_and_hub_urls():
    assert ModelRef.parse("org/repo") == ModelRef("org/repo", None)
    assert ModelRef.parse("org/repo:q4_k_m") == ModelRef("org/repo", "Q4_K_M")
    assert ModelRef.parse("https://huggingface.co/org/repo") == ModelRef("org/repo", None)
    # A newline is no part of a name, not even at its end (a regex `$` let "org/repo\n" through).
    for bad in ("repo", "a/b/c", "../x/y", "org/..", "", "org/re po", "org/repo\n", "org\n/repo", "org/repo\n:Q4_0",
                "org/repo:Q4 x", "org/repo:Q4\n"):
        with pytest.raises(InvalidRequest):
            ModelRef.parse(bad)


def test_import_records_files_in_place_without_copying(store, tiny_dir):
    manifest = import_local(store, ModelRef.parse("me/text"), tiny_dir / "qwen3-script-text.gguf")
    assert manifest.model_type is ModelType.llm
    entry = manifest.quants["F32"].files[0]
    assert entry.path == str((tiny_dir / "qwen3-script-text.gguf").resolve())
    assert entry.size == (tiny_dir / "qwen3-script-text.gguf").stat().st_size
    assert len(entry.sha256) == 64
    assert not list(store.model_dir("me/text").glob("*.gguf"))  # nothing copied


def test_import_detects_types_and_pairs_the_projector(store, tiny_dir, tmp_path):
    folder = tmp_path / "vlm"
    folder.mkdir()
    shutil.copy(tiny_dir / "qwen3-script-text.gguf", folder / "tiny-Q8_0.gguf")
    shutil.copy(tiny_dir / "mmproj-gemma3.gguf", folder / "projector.gguf")  # found by its header, not its name
    vlm = import_local(store, ModelRef.parse("me/vlm"), folder)
    assert vlm.model_type is ModelType.vlm and set(vlm.quants) == {"Q8_0"} and vlm.mmproj.name == "projector.gguf"
    assert import_local(store, ModelRef.parse("me/emb"), tiny_dir / "bert-embed.gguf").model_type is ModelType.embedder
    assert import_local(store, ModelRef.parse("me/rr"), tiny_dir / "bert-rerank.gguf").model_type is ModelType.reranker


def test_split_shards_import_as_one_quant_in_order(store, tiny_dir, tmp_path):
    folder = tmp_path / "split"
    folder.mkdir()
    for i in (2, 1, 3):
        shutil.copy(tiny_dir / "qwen3-script-text.gguf", folder / f"big-Q4_K_M-0000{i}-of-00003.gguf")
    manifest = import_local(store, ModelRef.parse("me/split"), folder, ModelType.llm)
    assert [f.name for f in manifest.quants["Q4_K_M"].files] == [f"big-Q4_K_M-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    (folder / "big-Q4_K_M-00003-of-00003.gguf").unlink()
    with pytest.raises(StoreError, match="split into 3 files but 2"):
        import_local(store, ModelRef.parse("me/split2"), folder)


def test_resolve_is_case_insensitive_and_explains_what_is_missing(store, tiny_dir):
    import_local(store, ModelRef.parse("Org/Repo"), tiny_dir / "qwen3-script-text.gguf")
    manifest, quant = store.resolve(ModelRef.parse("org/repo:f32"))
    assert (manifest.name, quant) == ("Org/Repo", "F32")
    with pytest.raises(ModelNotFound, match="nexa pull other/model"):
        store.resolve(ModelRef.parse("other/model"))
    with pytest.raises(ModelNotFound, match="no quant Q8_0"):
        store.resolve(ModelRef.parse("org/repo:Q8_0"))


def test_second_quant_joins_the_manifest_and_removing_one_keeps_the_other(store, tiny_dir, tmp_path):
    for quant in ("Q4_0", "Q8_0"):
        path = tmp_path / f"m-{quant}.gguf"
        shutil.copy(tiny_dir / "qwen3-script-text.gguf", path)
        import_local(store, ModelRef.parse("me/m"), path)
    assert set(store.get("me/m").quants) == {"Q4_0", "Q8_0"}
    assert store.get("me/m").default_quant() == "Q4_0"
    assert store.remove(ModelRef.parse("me/m:q8_0")) == ["Q8_0"]
    assert set(store.get("me/m").quants) == {"Q4_0"}
    assert (tmp_path / "m-Q8_0.gguf").exists()  # the user's own file stays
    assert store.remove(ModelRef.parse("me/m")) == ["Q4_0"]
    assert store.get("me/m") is None and store.list() == []
    assert (tmp_path / "m-Q4_0.gguf").exists()


def test_a_folder_without_manifest_is_not_a_model(store, tiny_dir):
    import_local(store, ModelRef.parse("me/a"), tiny_dir / "qwen3-script-text.gguf")
    (store.models_dir / "me" / "half").mkdir()
    (store.models_dir / "me" / "half" / "x.gguf.part").write_bytes(b"partial")
    assert [m.name for m in store.list()] == ["me/a"]


def test_manifest_is_replaced_atomically(store, tiny_dir):
    import_local(store, ModelRef.parse("me/a"), tiny_dir / "qwen3-script-text.gguf")
    folder = store.model_dir("me/a")
    assert json.loads((folder / "manifest.json").read_text())["name"] == "me/a"
    assert not list(folder.glob(".manifest.*"))  # no temp file left behind
