"""nexa list, show, remove and clean on pulled and imported models."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pexpect

from nexa.store import ModelRef, ModelType, Store
from nexa.store.importer import import_local
from tests.fixtures.fake_hub import pull_in_process, run_nexa


def test_list_and_show_describe_a_pulled_model(hub_env):
    pull_in_process(hub_env, "test-org/Tiny-GGUF")
    listing = run_nexa(hub_env, "list").stdout
    assert "SIZE ON DISK" in listing and "test-org/Tiny-GGUF" in listing and "1.5 MB" in listing
    shown = run_nexa(hub_env, "show", "test-org/tiny-gguf").stdout
    for line in ("architecture +qwen3", "parameters +365.4K", "context length +2048", "chat template +yes",
                 "capabilities +completion, chat, tools", "source +hf:test-org/Tiny-GGUF"):
        assert re.search(line, shown), (line, shown)
    pull_in_process(hub_env, "test-org/Vision-GGUF", ModelType.vlm)
    shown = run_nexa(hub_env, "show", "test-org/Vision-GGUF").stdout
    assert re.search("capabilities +completion, chat, tools, vision", shown) and "mmproj-vision-F16.gguf" in shown
    missing = run_nexa(hub_env, "show", "test-org/Other")
    assert missing.returncode == 1 and "nexa pull test-org/Other" in missing.stderr


def test_clean_asks_first_then_removes_models_and_partials_but_not_imported_files(hub_env, tiny_dir, tmp_path):
    own = tmp_path / "mine-Q4_0.gguf"
    shutil.copy(tiny_dir / "qwen3-script-text.gguf", own)
    store = Store(Path(hub_env["NEXA_DATADIR"]))
    import_local(store, ModelRef.parse("me/mine"), own)
    pull_in_process(hub_env, "test-org/Tiny-GGUF")
    leftover = store.model_dir("test-org/Half-GGUF") / "half-Q4_0.gguf.incomplete"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"partial")

    child = pexpect.spawn(sys.executable, ["-m", "nexa", "clean"], env=hub_env, encoding="utf-8", timeout=60)
    child.expect(r"Remove every model in .*\? \[y/N\]")
    child.sendline("n")
    child.expect("Nothing removed")
    child.expect(pexpect.EOF)
    assert len(store.list()) == 2

    result = run_nexa(hub_env, "clean", "--yes")
    assert result.returncode == 0 and "removed 2 model(s): me/mine, test-org/Tiny-GGUF" in result.stdout
    assert store.list() == [] and not leftover.exists()
    assert own.read_bytes() == (tiny_dir / "qwen3-script-text.gguf").read_bytes()  # the user's file stays


def test_importing_a_truncated_or_foreign_file_says_so_in_a_line_or_two(hub_env, tiny_dir, tmp_path):
    cut = tmp_path / "cut-Q4_0.gguf"
    cut.write_bytes((tiny_dir / "qwen3-script-text.gguf").read_bytes()[:3000])
    foreign = tmp_path / "other-Q4_0.gguf"
    foreign.write_bytes(b"PK\x03\x04 a zip, not a model")
    for path, says, fix in ((cut, "is not a complete GGUF file", "download or copy it again"),
                            (foreign, "is not a GGUF file", "convert it")):
        result = run_nexa(hub_env, "pull", "me/cut", "--local-path", str(path))
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert says in result.stderr and fix in result.stderr
        assert len(result.stderr.strip().splitlines()) <= 2, result.stderr
    assert Store(Path(hub_env["NEXA_DATADIR"])).get("me/cut") is None
