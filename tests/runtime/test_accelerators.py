"""The GPUs a runtime reports, which size the device-memory budget."""

from __future__ import annotations

from nexa.runtime.accelerators import Accelerator, accelerators, parse_list_devices
from nexa.runtime.memory import MIB
from tests.conftest import native_binary

TWO_GPUS = """\
ggml_cuda_init: found 2 CUDA devices:
  Device 0: NVIDIA GeForce RTX 4090, compute capability 8.9, VMM: yes
  Device 1: NVIDIA GeForce RTX 3090, compute capability 8.6, VMM: yes
Available devices:
  CUDA0: NVIDIA GeForce RTX 4090 (24080 MiB, 23500 MiB free)
  CUDA1: NVIDIA GeForce RTX 3090 (24135 MiB, 1200 MiB free)
  BLAS: OpenBLAS (0 MiB, 0 MiB free)
"""


def test_list_devices_output_names_each_gpu_and_its_memory():
    assert parse_list_devices(TWO_GPUS) == (
        Accelerator("CUDA0", "NVIDIA GeForce RTX 4090", 24080 * MIB, 23500 * MIB),
        Accelerator("CUDA1", "NVIDIA GeForce RTX 3090", 24135 * MIB, 1200 * MIB),
    )  # a device without memory of its own (BLAS) is no budget
    assert parse_list_devices("Available devices:\n  (none)\n") == ()


def test_the_runtimes_on_this_machine_report_no_gpu():
    assert accelerators("xllamacpp") == ()  # asked of the wheel itself, in a child process
    binary = native_binary()
    if binary is not None:
        assert accelerators(str(binary)) == ()


def test_a_runtime_that_cannot_answer_reports_none(tmp_path):
    assert accelerators(str(tmp_path / "gone")) == ()
