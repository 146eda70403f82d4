"""nexa runtime list/build and serve --runtime, as a user runs them (no compiling: a fake installed build)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import ServerProcess
from tests.fixtures.fake_hub import run_nexa
from tests.runtime.test_runtimes import fake_runtime


def env_for(datadir: Path) -> dict[str, str]:
    return {**os.environ, "NEXA_DATADIR": str(datadir), "COLUMNS": "200"}


def test_list_shows_each_runtime_its_llama_cpp_build_and_cpu_features(tmp_path):
    fake_runtime(tmp_path, "llama-server-b11434-avx2", ["GGML_AVX", "GGML_AVX2"])
    listing = run_nexa(env_for(tmp_path), "runtime", "list").stdout
    assert "llama-server-b11434-avx2" in listing and "b11434" in listing and "avx avx2" in listing
    assert "xllamacpp" in listing


def test_list_shows_the_gpus_a_runtime_reports_with_their_memory(tmp_path):
    fake_runtime(tmp_path, "llama-server-b11434-avx2-cuda", ["GGML_AVX", "GGML_AVX2"], gpu="cuda",
                 devices="  CUDA0: NVIDIA H100 80GB HBM3 (81007 MiB, 80466 MiB free)")
    fake_runtime(tmp_path, "llama-server-b11434-avx2-vulkan", ["GGML_AVX", "GGML_AVX2"], gpu="vulkan")
    listing = run_nexa(env_for(tmp_path), "runtime", "list").stdout
    assert "CUDA0: NVIDIA H100 80GB HBM3 (84.9 GB)" in listing
    assert "vulkan (no device visible)" in listing


def test_serve_names_the_gpus_of_its_runtime_and_their_budget(tmp_path):
    fake_runtime(tmp_path, "llama-server-b11434-avx2-cuda", ["GGML_AVX", "GGML_AVX2"], gpu="cuda",
                 devices="  CUDA0: NVIDIA H100 80GB HBM3 (81007 MiB, 80466 MiB free)")
    server = ServerProcess(tmp_path, "--runtime", "llama-server-b11434-avx2-cuda", "--device-memory-budget", "60GB")
    server.stop()
    assert "GPU CUDA0: NVIDIA H100 80GB HBM3, 84.9 GB (60.0 GB for models" in server.output


def test_build_does_nothing_when_this_build_is_installed(tmp_path):
    from nexa.toolchain.build import plan_for_machine

    plan = plan_for_machine("none")
    fake_runtime(tmp_path, plan.name, list(plan.cpu_options))
    done = run_nexa(env_for(tmp_path), "runtime", "build", "--gpu", "none")
    assert done.returncode == 0 and "installed already" in done.stdout


def test_serve_refuses_a_runtime_that_is_not_there_naming_it(tmp_path):
    done = run_nexa(env_for(tmp_path), "serve", "--port", "0", "--runtime", str(tmp_path / "llama-server"))
    assert done.returncode == 1
    assert "llama-server" in done.stderr and "nexa runtime build" in done.stderr
