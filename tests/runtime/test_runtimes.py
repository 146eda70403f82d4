"""Choosing a runtime, and what a native build may use: unit tests without compiling anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nexa.config import Settings
from nexa.errors import ConfigError
from nexa.runtime import cpu
from nexa.toolchain.build import Plan
from nexa.runtime.runtimes import check_runs, installed, resolve

AMX_CPU = {"sse4_2", "avx", "avx2", "fma", "f16c", "bmi2", "avx512f", "avx512cd", "avx512vl", "avx512dq",
           "avx512bw", "avx512_vnni", "avx512_bf16", "avx512vbmi", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16"}


def fake_runtime(datadir: Path, name: str, options: list[str], gpu: str | None = None,
                 devices: str = "  (none)") -> Path:
    """An installed runtime whose binary answers --version, and --list-devices with `devices`."""
    folder = datadir / "runtimes" / name
    folder.mkdir(parents=True)
    binary = folder / "llama-server"
    binary.write_text(f"""#!/bin/sh
if [ "$1" = --list-devices ]; then printf 'Available devices:\\n{devices}\\n'; exit 0; fi
echo 'version: 0.6.0-dev (build 11434, commit unknown)'
""")
    binary.chmod(0o755)
    (folder / "runtime.json").write_text(json.dumps({"build": "11434", "cpu_options": options, "gpu": gpu}))
    return binary


def test_amx_the_kernel_has_not_enabled_is_left_out_and_everything_else_kept():
    options = cpu.usable_options(AMX_CPU, amx_ok=False)
    assert not any("AMX" in option for option in options)
    assert {"GGML_AVX512", "GGML_AVX512_VNNI", "GGML_AVX512_BF16", "GGML_AVX_VNNI", "GGML_AVX2"} <= set(options)
    assert "GGML_AMX_TILE" in cpu.usable_options(AMX_CPU, amx_ok=True)
    assert cpu.tag(options) == "avx512" and cpu.tag(cpu.usable_options(AMX_CPU, True)) == "avx512-amx"


def test_avx512_needs_all_of_its_base_parts():
    assert "GGML_AVX512" not in cpu.usable_options({"avx2", "avx512f"}, amx_ok=True)


def test_an_x86_build_names_every_instruction_set_and_never_asks_for_native():
    flags = Plan(("GGML_AVX", "GGML_AVX2")).cmake_flags()
    assert "-DGGML_NATIVE=OFF" in flags and "-DGGML_AVX2=ON" in flags and "-DGGML_AMX_TILE=OFF" in flags
    assert "-DLLAMA_CURL=OFF" in flags and "-DLLAMA_BUILD_TESTS=OFF" in flags
    assert "-DGGML_CUDA=ON" in Plan(("GGML_AVX2",), "cuda").cmake_flags()
    assert Plan(("GGML_AVX2",), "cuda").name == "llama-server-b11434-avx2-cuda"


def test_auto_is_xllamacpp_until_a_runtime_is_built(tmp_path):
    assert resolve("auto", tmp_path) == "xllamacpp"


def test_auto_takes_the_widest_build_this_cpu_runs(tmp_path):
    here = list(cpu.machine_options())
    fake_runtime(tmp_path, "narrow", here[:1])
    wide = fake_runtime(tmp_path, "wide", here)
    fake_runtime(tmp_path, "foreign", [*here, "GGML_OF_ANOTHER_CPU"])  # the widest, but not for this CPU
    assert [r.name for r in installed(tmp_path)] == ["foreign", "wide", "narrow"]
    assert resolve("auto", tmp_path) == str(wide.resolve())


def test_an_installed_runtime_can_be_named_and_a_binary_given_by_path(tmp_path):
    binary = fake_runtime(tmp_path, "mine", [])
    assert resolve("mine", tmp_path) == str(binary.resolve())
    assert resolve(str(binary.parent), tmp_path) == str(binary.resolve())
    assert check_runs(str(binary)) == "11434"


def test_a_missing_or_non_executable_binary_is_refused_by_name(tmp_path):
    with pytest.raises(ConfigError, match="nexa runtime build"):
        resolve(str(tmp_path / "nowhere" / "llama-server"), tmp_path)
    plain = tmp_path / "llama-server"
    plain.write_text("")
    with pytest.raises(ConfigError, match="not executable"):
        resolve(str(plain), tmp_path)


def test_a_binary_that_is_not_llama_server_is_refused_at_start(tmp_path):
    other = tmp_path / "other"
    other.write_text("#!/bin/sh\necho nope >&2\nexit 3\n")
    other.chmod(0o755)
    with pytest.raises(ConfigError, match="does not run as llama-server here"):
        check_runs(str(other))


def test_a_model_option_chooses_its_own_runtime():
    settings = Settings(runtime="xllamacpp", model_options=["org/big:runtime=/opt/llama-server,ctx=2048"])
    assert settings.runtime_for("org/big", "Q4_0") == "/opt/llama-server"
    assert settings.runtime_for("org/small", "Q4_0") == "xllamacpp"
