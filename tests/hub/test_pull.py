"""`nexa pull` against a local fake Hugging Face Hub, run as a user runs it (a subprocess with HF_ENDPOINT set)."""

from __future__ import annotations

import fcntl
import hashlib
import random
import shutil
import sys
from pathlib import Path

import gguf
import numpy as np
import openai
import pexpect
import pytest

from nexa.errors import HubError, StoreError
from nexa.store import ModelType, Store
from tests.conftest import ServerProcess
from tests.fixtures.fake_hub import TOKEN, FakeRepo, pull_in_process, run_nexa

TINY = "test-org/Tiny-GGUF"


def store_of(env: dict[str, str]) -> Store:
    return Store(Path(env["NEXA_DATADIR"]))


def partials(env: dict[str, str]) -> list[Path]:
    return list(Path(env["NEXA_DATADIR"]).rglob("*.incomplete"))


def test_pull_without_a_terminal_takes_the_defaults_and_says_so(hub_env, fake_hub):
    result = run_nexa(hub_env, "pull", TINY)
    assert result.returncode == 0, result.stderr
    assert "No terminal to ask on: using model type llm, quant Q4_K_M" in result.stdout
    manifest = store_of(hub_env).get(TINY)
    assert manifest.model_type is ModelType.llm and list(manifest.quants) == ["Q4_K_M"]
    assert manifest.source == f"hf:{TINY}"
    entry = manifest.quants["Q4_K_M"].files[0]
    data = (store_of(hub_env).model_dir(TINY) / entry.name).read_bytes()
    assert data == fake_hub.repos[TINY].files["tiny-Q4_K_M.gguf"]
    assert entry.sha256 == hashlib.sha256(data).hexdigest() and entry.size == len(data)
    assert partials(hub_env) == []


def test_pulling_a_present_quant_is_a_no_op_and_another_quant_joins_the_manifest(hub_env, fake_hub):
    assert run_nexa(hub_env, "pull", TINY, "--yes").returncode == 0
    downloads = len(fake_hub.requests_for("/cdn/"))
    again = run_nexa(hub_env, "pull", f"{TINY}:q4_k_m")
    assert again.returncode == 0 and "already pulled; nothing to do" in again.stdout
    again = run_nexa(hub_env, "pull", TINY, "--yes")  # the default quant, found after listing the repo
    assert again.returncode == 0 and "already pulled; nothing to do" in again.stdout
    assert len(fake_hub.requests_for("/cdn/")) == downloads
    assert run_nexa(hub_env, "pull", "test-org/tiny-gguf", "--quant", "Q8_0").returncode == 0
    manifest = store_of(hub_env).get(TINY)
    assert manifest.name == TINY and sorted(manifest.quants) == ["Q4_K_M", "Q8_0"]


def test_split_shards_download_together_in_order(hub_env, fake_hub):
    result = run_nexa(hub_env, "pull", "https://huggingface.co/test-org/Split-GGUF:Q8_0", "--model-type", "llm")
    assert result.returncode == 0, result.stderr
    store = store_of(hub_env)
    entries = store.get("test-org/Split-GGUF").quants["Q8_0"].files
    assert [e.name for e in entries] == ["Q8_0/tiny-Q8_0-00001-of-00002.gguf", "Q8_0/tiny-Q8_0-00002-of-00002.gguf"]
    folder = store.model_dir("test-org/Split-GGUF")
    joined = b"".join((folder / e.name).read_bytes() for e in entries)
    repo = fake_hub.repos["test-org/Split-GGUF"]
    assert joined == repo.files["Q8_0/tiny-Q8_0-00001-of-00002.gguf"] + repo.files["Q8_0/tiny-Q8_0-00002-of-00002.gguf"]


def test_a_repo_with_a_projector_is_a_vlm_and_brings_its_f16_projector(hub_env):
    assert run_nexa(hub_env, "pull", "test-org/Vision-GGUF").returncode == 0
    manifest = store_of(hub_env).get("test-org/Vision-GGUF")
    assert manifest.model_type is ModelType.vlm and manifest.mmproj.name == "mmproj-vision-F16.gguf"
    assert (store_of(hub_env).model_dir("test-org/Vision-GGUF") / "mmproj-vision-F16.gguf").is_file()


def test_a_vlm_without_a_projector_in_the_repo_is_refused(hub_env):
    with pytest.raises(HubError, match="has no projector .mmproj. file, so it cannot be a vlm"):
        pull_in_process(hub_env, TINY, ModelType.vlm)


def test_embedders_and_rerankers_are_recognised_from_their_header(hub_env):
    for repo, kind in (("test-org/Embed-GGUF", ModelType.embedder), ("test-org/Rerank-GGUF", ModelType.reranker)):
        result = run_nexa(hub_env, "pull", repo)
        assert result.returncode == 0, result.stderr
        assert store_of(hub_env).get(repo).model_type is kind
        assert "Select quant" not in result.stdout  # a single quant needs no choice


def big_vocab_reranker(path: Path) -> None:
    """A reranker whose 250k-token vocabulary (about 4 MB) comes before the keys that say reranker."""
    writer = gguf.GGUFWriter(path, "bert")
    writer.add_token_list([f"tok{i}" for i in range(250_000)])
    writer.add_pooling_type(gguf.PoolingType.RANK)
    writer.add_classifier_output_labels(["LABEL_0"])
    writer.add_tensor("token_embd.weight", np.zeros((1, 4), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_a_reranker_whose_header_is_larger_than_2_mib_is_still_recognised(hub_env, fake_hub, tmp_path, monkeypatch):
    big_vocab_reranker(tmp_path / "big.gguf")
    data = (tmp_path / "big.gguf").read_bytes()
    assert len(data) > 2 << 20
    monkeypatch.setitem(fake_hub.repos, "test-org/BigVocab-Rerank-GGUF", FakeRepo({"rerank-F32.gguf": data}))
    result = run_nexa(hub_env, "pull", "test-org/BigVocab-Rerank-GGUF")
    assert result.returncode == 0, result.stderr
    assert "using model type reranker" in result.stdout
    assert store_of(hub_env).get("test-org/BigVocab-Rerank-GGUF").model_type is ModelType.reranker


def test_a_gated_repo_says_how_to_log_in_and_pulls_with_a_token(hub_env):
    result = run_nexa(hub_env, "pull", "test-org/Gated-GGUF", "-t", "llm")
    assert result.returncode == 1
    assert "gated or private" in result.stderr and "HF_TOKEN=" in result.stderr and "hf auth login" in result.stderr
    assert "Traceback" not in result.stderr and store_of(hub_env).get("test-org/Gated-GGUF") is None
    for variable in ("HF_TOKEN", "NEXA_HFTOKEN"):
        env = {**hub_env, variable: TOKEN, "NEXA_DATADIR": hub_env["NEXA_DATADIR"] + variable}
        result = run_nexa(env, "pull", "test-org/Gated-GGUF", "-t", "llm")
        assert result.returncode == 0, result.stderr


def test_a_missing_repo_and_a_repo_without_gguf_say_so(hub_env):
    missing = run_nexa(hub_env, "pull", "test-org/No-Such-GGUF")
    assert missing.returncode == 1 and "test-org/No-Such-GGUF does not exist" in missing.stderr
    no_gguf = run_nexa(hub_env, "pull", "test-org/Safetensors")
    assert no_gguf.returncode == 1 and "has no GGUF model files" in no_gguf.stderr
    unknown_quant = run_nexa(hub_env, "pull", f"{TINY}:Q2_K")
    assert unknown_quant.returncode == 1 and "has no quant Q2_K; it has Q4_K_M, Q8_0" in unknown_quant.stderr
    assert "Traceback" not in missing.stderr + no_gguf.stderr + unknown_quant.stderr


def test_a_file_that_fails_its_sha256_is_deleted_and_no_model_is_written(hub_env):
    result = run_nexa(hub_env, "pull", "test-org/Corrupt-GGUF", "-t", "llm")
    assert result.returncode == 1 and "is corrupt" in result.stderr and "sha256" in result.stderr
    assert store_of(hub_env).get("test-org/Corrupt-GGUF") is None
    assert not list(store_of(hub_env).model_dir("test-org/Corrupt-GGUF").glob("*.gguf*"))
    assert "No models yet" in run_nexa(hub_env, "list").stdout


def test_a_pull_that_does_not_fit_on_the_disk_stops_before_downloading(hub_env, fake_hub, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 10**5, 10**5))
    downloads = len(fake_hub.requests_for("/cdn/"))
    with pytest.raises(StoreError, match=r"needs 1 MB more but .* has 0 MB free; free some space"):
        pull_in_process(hub_env, TINY)
    assert len(fake_hub.requests_for("/cdn/")) == downloads and store_of(hub_env).get(TINY) is None


def test_a_disk_that_fills_up_mid_pull_is_one_message_and_the_next_pull_resumes(hub_env):
    partial = store_of(hub_env).model_dir(TINY) / "tiny-Q4_K_M.gguf.incomplete"
    partial.parent.mkdir(parents=True)
    partial.symlink_to("/dev/full")  # every write fails with ENOSPC, as on a full disk
    result = run_nexa(hub_env, "pull", TINY, "--yes")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "filled up during the pull; free some space" in result.stderr and "resume" in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2, result.stderr
    assert store_of(hub_env).get(TINY) is None
    partial.unlink()
    assert run_nexa(hub_env, "pull", TINY, "--yes").returncode == 0


def test_a_dropped_download_resumes_on_the_next_pull_and_ends_byte_identical(hub_env, fake_hub, tiny_dir):
    name = "big-Q4_0.gguf"
    big = (tiny_dir / "qwen3-script-text.gguf").read_bytes() + random.Random(3).randbytes(11 << 20)
    fake_hub.repos["test-org/Big-GGUF"] = FakeRepo({name: big}, drops={name: 3})  # more than one pull retries
    first = run_nexa(hub_env, "pull", "test-org/Big-GGUF", "-t", "llm")
    assert first.returncode == 1 and "run the same nexa pull again to resume" in first.stderr
    assert store_of(hub_env).get("test-org/Big-GGUF") is None
    [partial] = partials(hub_env)
    kept = partial.stat().st_size
    assert 0 < kept < len(big) and partial.read_bytes() == big[:kept]

    before = len(fake_hub.requests_for("/cdn/"))
    second = run_nexa(hub_env, "pull", "test-org/Big-GGUF", "-t", "llm")
    assert second.returncode == 0, second.stderr
    assert fake_hub.requests_for("/cdn/")[before].range == f"bytes={kept}-"
    assert (store_of(hub_env).model_dir("test-org/Big-GGUF") / name).read_bytes() == big
    assert partials(hub_env) == []


def test_ctrl_c_keeps_the_partial_download_and_the_next_pull_continues_it(hub_env, fake_hub, tiny_dir):
    name = "slow-Q4_0.gguf"
    data = (tiny_dir / "qwen3-script-text.gguf").read_bytes() + random.Random(4).randbytes(8 << 20)
    fake_hub.repos["test-org/Slow-GGUF"] = FakeRepo({name: data}, slow={name: 1})
    partial = store_of(hub_env).model_dir("test-org/Slow-GGUF") / (name + ".incomplete")
    child = pexpect.spawn(sys.executable, ["-m", "nexa", "pull", "test-org/Slow-GGUF", "-t", "llm"], env=hub_env,
                          encoding="utf-8", timeout=60)
    while not (partial.is_file() and partial.stat().st_size > 0):
        assert child.isalive(), child.read()
        child.expect([pexpect.TIMEOUT, pexpect.EOF], timeout=0.02)
    child.sendintr()
    child.expect("interrupted; run the same nexa pull again to continue where it stopped")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1 and store_of(hub_env).get("test-org/Slow-GGUF") is None
    kept = partial.stat().st_size
    assert 0 < kept < len(data)

    before = len(fake_hub.requests_for("/cdn/"))
    assert run_nexa(hub_env, "pull", "test-org/Slow-GGUF", "-t", "llm").returncode == 0
    assert fake_hub.requests_for("/cdn/")[before].range == f"bytes={kept}-"
    assert (partial.parent / name).read_bytes() == data and not partial.exists()


def test_a_second_pull_of_the_same_model_waits_for_the_first(hub_env):
    folder = store_of(hub_env).model_dir(TINY)
    folder.mkdir(parents=True)
    with (folder / ".pull.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as a running pull holds it
        child = pexpect.spawn(sys.executable, ["-m", "nexa", "pull", TINY, "--yes"], env=hub_env,
                              encoding="utf-8", timeout=60)
        child.expect("another nexa pull of test-org/Tiny-GGUF is running; waiting")
        assert store_of(hub_env).get(TINY) is None
        fcntl.flock(lock, fcntl.LOCK_UN)
    child.expect("pulled test-org/Tiny-GGUF:Q4_K_M")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_a_pulled_model_is_served_and_answers_a_chat_request(hub_env):
    pull_in_process(hub_env, TINY)
    server = ServerProcess(Path(hub_env["NEXA_DATADIR"]))
    try:
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=60)
        reply = client.chat.completions.create(model=TINY, messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == "Hello from a scripted model."
    finally:
        server.stop()


def test_hub_settings_are_read_from_the_environment_at_pull_time(hub_env):
    # HF_ENDPOINT pointing nowhere: the pull says it cannot reach it, rather than asking huggingface.co
    result = run_nexa({**hub_env, "HF_ENDPOINT": "http://127.0.0.1:9"}, "pull", TINY)
    assert result.returncode == 1 and "cannot reach http://127.0.0.1:9" in result.stderr
    offline = run_nexa({**hub_env, "HF_HUB_OFFLINE": "1"}, "pull", TINY)
    assert offline.returncode == 1 and "HF_HUB_OFFLINE is set" in offline.stderr
    assert "Traceback" not in result.stderr + offline.stderr


def test_downloaded_weights_are_on_disk_before_the_manifest_names_them(hub_env, monkeypatch):
    import os

    from nexa.hub import download

    synced: list[str] = []
    manifest = Path(hub_env["NEXA_DATADIR"]) / "models" / TINY / "manifest.json"
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(("manifest " if manifest.exists() else "") + os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(download.os, "fsync", spy)
    pull_in_process(hub_env, TINY)
    assert any(path.endswith("tiny-Q4_K_M.gguf.incomplete") for path in synced), synced
    assert not any(path.startswith("manifest ") for path in synced)


class _RemoveMidPull:
    """Pull events that, once the download is under way, remove another quant or the whole model."""

    def __init__(self, store: Store, remove):  # noqa: ANN001
        self._store, self._remove, self.done = store, remove, False

    def waiting(self, repo: str) -> None:
        pass

    def file(self, name: str, size: int):  # noqa: ANN201
        def progress(done: int) -> None:
            if done and not self.done:
                self.done = True
                self._remove(self._store)

        return progress


def test_removing_a_quant_while_another_is_pulled_stays_removed(hub_env):
    from nexa.hub.pull import pull
    from nexa.hub.resolve import list_repo
    from nexa.store import ModelRef
    import os
    from unittest import mock

    store = store_of(hub_env)
    with mock.patch.dict(os.environ, {"HF_ENDPOINT": hub_env["HF_ENDPOINT"]}):
        files = list_repo(TINY)
        pull(store, files, "Q4_K_M", ModelType.llm, _RemoveMidPull(store, lambda s: None))
        events = _RemoveMidPull(store, lambda s: s.remove(ModelRef(TINY, "Q4_K_M")))
        manifest, _ = pull(store, files, "Q8_0", ModelType.llm, events)
    assert events.done and set(manifest.quants) == {"Q8_0"} and set(store.get(TINY).quants) == {"Q8_0"}
    assert not (store.model_dir(TINY) / "tiny-Q4_K_M.gguf").exists()


def test_removing_the_whole_model_mid_pull_keeps_the_pulls_lock_and_files(hub_env):
    from nexa.hub.pull import pull
    from nexa.hub.resolve import list_repo
    from nexa.store import ModelRef
    import os
    from unittest import mock

    store = store_of(hub_env)
    with mock.patch.dict(os.environ, {"HF_ENDPOINT": hub_env["HF_ENDPOINT"]}):
        files = list_repo(TINY)
        pull(store, files, "Q4_K_M", ModelType.llm, _RemoveMidPull(store, lambda s: None))
        seen: list[bool] = []

        def remove(s: Store) -> None:
            s.remove(ModelRef(TINY))
            seen.append((s.model_dir(TINY) / ".pull.lock").exists())

        events = _RemoveMidPull(store, remove)
        pull(store, files, "Q8_0", ModelType.llm, events)
    assert seen == [True] and set(store.get(TINY).quants) == {"Q8_0"}
    assert (store.model_dir(TINY) / "tiny-Q8_0.gguf").is_file()
