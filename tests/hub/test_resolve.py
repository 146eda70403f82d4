"""Which files of a repo make up which quant, which quant and projector a pull picks, and header sniffing."""

from __future__ import annotations

from nexa.hub.resolve import RemoteFile, RepoFiles, group_files
from nexa.store import ModelType
from nexa.store.gguf_meta import detect_type_from_prefix
from nexa.store.manifest import preferred_quant


def files(*names: str, size: int = 10) -> list[RemoteFile]:
    return [RemoteFile(name, size, "0" * 64) for name in names]


def test_files_group_by_quant_with_shards_in_order_and_projectors_apart():
    quants, mmprojs = group_files(files(
        "README.md", "model-Q8_0.gguf", "mmproj-model-f16.gguf", "config.json",
        "Q4_K_M/model-Q4_K_M-00002-of-00002.gguf", "Q4_K_M/model-Q4_K_M-00001-of-00002.gguf",
    ))
    assert {q: [f.name for f in fs] for q, fs in quants.items()} == {
        "Q8_0": ["model-Q8_0.gguf"],
        "Q4_K_M": ["Q4_K_M/model-Q4_K_M-00001-of-00002.gguf", "Q4_K_M/model-Q4_K_M-00002-of-00002.gguf"],
    }
    assert [f.name for f in mmprojs] == ["mmproj-model-f16.gguf"]


def test_a_split_missing_a_shard_and_paths_leaving_the_folder_are_left_out():
    quants, _ = group_files(files("big-Q8_0-00001-of-00003.gguf", "big-Q8_0-00002-of-00003.gguf",
                                  "../evil-Q4_0.gguf", "/abs-Q4_0.gguf", "ok-Q4_0.gguf"))
    assert {q: [f.name for f in fs] for q, fs in quants.items()} == {"Q4_0": ["ok-Q4_0.gguf"]}


def test_a_file_without_a_quant_in_its_name_is_its_own_quant():
    quants, _ = group_files(files("model.gguf"))
    assert list(quants) == ["MODEL"]


def test_default_quant_prefers_q4_k_m_then_q4_0_then_q8_0_then_the_smallest():
    assert preferred_quant({"Q8_0": 8, "Q4_0": 4, "Q4_K_M": 5}) == "Q4_K_M"
    assert preferred_quant({"Q8_0": 8, "Q4_0": 4}) == "Q4_0"
    assert preferred_quant({"Q8_0": 8, "F16": 16}) == "Q8_0"
    assert preferred_quant({"F16": 16, "Q6_K": 6, "Q5_K_M": 5}) == "Q5_K_M"


def test_the_f16_projector_is_preferred_even_when_another_is_smaller():
    repo = RepoFiles("o/r", "main", {"Q4_0": files("m-Q4_0.gguf")},
                     [RemoteFile("mmproj-Q8_0.gguf", 5, None), RemoteFile("mmproj-F16.gguf", 9, None)])
    assert repo.mmproj().name == "mmproj-F16.gguf"
    repo = RepoFiles("o/r", "main", {"Q4_0": files("m-Q4_0.gguf")},
                     [RemoteFile("mmproj-F32.gguf", 9, None), RemoteFile("mmproj-Q8_0.gguf", 5, None)])
    assert repo.mmproj().name == "mmproj-Q8_0.gguf"


def test_the_first_bytes_of_a_gguf_tell_its_model_type(tiny_dir):
    def sniff(name: str, nbytes: int = 64 * 1024) -> ModelType | None:
        return detect_type_from_prefix((tiny_dir / name).read_bytes()[:nbytes])

    assert sniff("qwen3-script-text.gguf") is ModelType.llm
    assert sniff("bert-embed.gguf") is ModelType.embedder
    assert sniff("bert-rerank.gguf") is ModelType.reranker
    assert sniff("qwen3-script-text.gguf", 16) is None  # too short to name an architecture
    assert detect_type_from_prefix(b"<html>not a gguf</html>") is None
