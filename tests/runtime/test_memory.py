"""What a model takes in RAM and on each GPU: estimated from its GGUF header before it loads, then read from
the engine's own load report."""

from __future__ import annotations

from nexa.engine.spec import WorkerSpec
from nexa.runtime.memory import MIB, PROCESS_BASELINE, Footprint, LoadReport, device_of, estimate, fit_devices
from nexa.store.gguf_meta import read_shape


def spec(path, ctx: int = 1024, parallel: int = 1, model_type: str = "llm", **fields) -> WorkerSpec:
    return WorkerSpec(model_path=str(path), model_type=model_type, alias="x", ctx=ctx, parallel=parallel,
                      threads=1, api_key="k", **fields)


def test_kv_cache_grows_with_context_not_slots(tiny_dir):
    path = tiny_dir / "qwen3-random.gguf"
    shape = read_shape(str(path))
    # 2 layers x 1 KV head x (64 + 64) dims x 2 bytes (f16)
    assert (shape.n_layer, shape.n_head_kv, shape.key_length, shape.value_length) == (2, 1, 64, 64)
    small, large = estimate(spec(path, 1024, 1), 0, {}), estimate(spec(path, 2048, 4), 0, {})
    # the slots share one KV cache (unified): 4 slots of a 2048-token context hold 2048 tokens, not 8192; the
    # compute buffer's attention mask grows with the context too (f16, 512 micro-batch rows)
    assert large.ram - small.ram == (shape.kv_bytes_per_token() + 512 * 2) * (2048 - 1024) == 1536 * 1024
    assert small.devices == large.devices == {}


def test_a_quantized_kv_cache_counts_its_block_size(tiny_dir):
    path = tiny_dir / "qwen3-random.gguf"
    f16, q8, q4 = (estimate(spec(path, 4096, kv_cache_type=kind), 0, {}) for kind in ("f16", "q8_0", "q4_0"))
    # 256 elements a token: 2 bytes each in f16, 34 bytes per block of 32 in q8_0, 18 in q4_0
    assert (f16.ram - q8.ram, f16.ram - q4.ram) == (4096 * (512 - 272), 4096 * (512 - 144))


def test_the_prompt_cache_stays_in_ram_even_when_the_model_is_offloaded(tiny_dir):
    path = tiny_dir / "qwen3-random.gguf"
    gpu = {"CUDA0": 2**30}
    alone, cached = estimate(spec(path, ngl=-1), 0, gpu), estimate(spec(path, ngl=-1, prompt_cache_mib=64), 0, gpu)
    assert cached.ram - alone.ram == 64 * MIB and cached.devices == alone.devices


def test_encoder_models_keep_no_kv_cache(tiny_dir):
    path = tiny_dir / "bert-embed.gguf"
    assert read_shape(str(path)).kv_bytes_per_token() == 0
    assert estimate(spec(path, 512, 1, "embedder"), 0, {}) == estimate(spec(path, 512, 8, "embedder"), 0, {})


def test_unreadable_file_counts_its_weights_and_the_process(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 20)
    assert estimate(spec(broken), 5000, {}) == Footprint(5000 + PROCESS_BASELINE)


def test_a_draft_model_counts_its_weights_and_kv_cache(tiny_dir):
    path = tiny_dir / "qwen3-random.gguf"
    alone = estimate(spec(path, 1024, 2), 0, {})
    drafted = estimate(spec(path, 1024, 2, speculative="draft-simple", draft_model_path=str(path)), 0, {})
    assert drafted.ram - alone.ram == path.stat().st_size + read_shape(str(path)).kv_bytes_per_token() * 1024


def test_offloaded_layers_go_to_the_gpus_in_proportion_to_their_memory(tiny_dir):
    path = tiny_dir / "qwen3-random.gguf"  # 2 layers, + the output layer: 3 for llama.cpp
    cpu = estimate(spec(path), 3_000_000, {})
    engine = cpu.ram - PROCESS_BASELINE
    every = estimate(spec(path, ngl=-1), 3_000_000, {"CUDA0": 3 * 2**30, "CUDA1": 2**30})
    assert every.ram == PROCESS_BASELINE
    assert every.devices == {"CUDA0": engine * 3 // 4, "CUDA1": engine // 4}
    one = estimate(spec(path, ngl=1), 3_000_000, {"CUDA0": 2**30})
    assert one.devices == {"CUDA0": engine // 3} and one.ram == cpu.ram - engine // 3
    assert estimate(spec(path, ngl=0), 3_000_000, {"CUDA0": 2**30}) == cpu


def test_what_does_not_fit_a_gpu_stays_in_ram():
    need = Footprint(100, {"CUDA0": 800, "CUDA1": 50})
    assert fit_devices(need, {"CUDA0": 500, "CUDA1": 900}) == Footprint(400, {"CUDA0": 500, "CUDA1": 50})
    assert fit_devices(need, {"CUDA0": -20}) == Footprint(900, {"CUDA0": 0, "CUDA1": 50})  # full already


def test_footprints_add_and_subtract_per_device():
    total = Footprint(10, {"CUDA0": 5}) + Footprint(1, {"CUDA1": 2})
    assert total == Footprint(11, {"CUDA0": 5, "CUDA1": 2})
    assert total - Footprint(1, {"CUDA1": 2}) == Footprint(10, {"CUDA0": 5, "CUDA1": 0})
    assert total.describe() == "0.00 GiB RAM, 0.00 GiB on CUDA0, 0.00 GiB on CUDA1"


# As both runtimes print it at verbosity 4 (llama.cpp b11434 and xllamacpp 2026.10, on this machine).
CPU_LOG = """\
0.00.003.054 I cmn  common_param:   - CPU     : AMD EPYC (24105 MiB, 24105 MiB free)
0.00.114.798 I common_memory_breakdown_print: |   - Host               |                  152 =    92 +      45 +      15                |
0.00.214.957 I load_tensors:   CPU_Mapped model buffer size =    92.10 MiB
0.00.216.008 I llama_context:        CPU  output buffer size =     0.38 MiB
0.00.216.079 I llama_kv_cache:        CPU KV buffer size =    45.00 MiB
0.00.246.961 I llama_kv_cache: size =   45.00 MiB (  1024 cells,  30 layers,  2/2 seqs), K (f16):   22.50 MiB, V (f16):   22.50 MiB
0.00.250.958 I sched_reserve:        CPU compute buffer size =    15.64 MiB
0.00.282.837 I srv    load_model: prompt cache is enabled, size limit: 8192 MiB
0.00.280.584 I srv  llama_server: listening on http://127.0.0.1:18999
"""

# The shapes llama.cpp prints for a model split over two CUDA GPUs, with pinned host buffers (its format
# strings in llama-model.cpp, llama-kv-cache.cpp and llama-context.cpp; as seen in its issue threads).
CUDA_LOG = """\
0.01.100.000 I load_tensors:   CPU_Mapped model buffer size =   417.66 MiB
0.01.100.001 I load_tensors:        CUDA0 model buffer size =  5434.38 MiB
0.01.100.002 I load_tensors:        CUDA1 model buffer size = 13989.53 MiB
0.01.200.000 I llama_context:  CUDA_Host  output buffer size =     1.95 MiB
0.01.200.001 I llama_kv_cache:      CUDA0 KV buffer size =  1536.00 MiB
0.01.200.002 I llama_kv_cache:      CUDA1 KV buffer size =  3584.00 MiB
0.01.300.000 I sched_reserve:      CUDA0 compute buffer size =   672.01 MiB
0.01.300.001 I sched_reserve:      CUDA1 compute buffer size =   460.00 MiB
0.01.300.002 I sched_reserve:  CUDA_Host compute buffer size =    12.01 MiB
0.01.300.003 D llama_context:      CUDA0 compute buffer size is 672.0100 MiB, matches expectation of 672.0100 MiB
"""


def report(log: str) -> LoadReport:
    loaded = LoadReport()
    for line in log.splitlines():
        loaded.feed(line)
    return loaded


def test_the_engines_own_buffer_report_is_what_a_cpu_model_holds():
    held = report(CPU_LOG).footprint()
    assert held == Footprint(int((92.10 + 0.38 + 45.00 + 15.64) * MIB) + PROCESS_BASELINE, {})


def test_gpu_buffers_count_on_their_device_and_pinned_host_buffers_in_ram():
    held = report(CUDA_LOG).footprint(projector_bytes=1000)
    assert held.ram == int((417.66 + 1.95 + 12.01) * MIB) + PROCESS_BASELINE
    assert held.devices == {"CUDA0": int((5434.38 + 1536.00 + 672.01) * MIB),
                            "CUDA1": int((13989.53 + 3584.00 + 460.00) * MIB) + 1000}  # the projector: where most went


def test_an_engine_that_reported_nothing_leaves_the_estimate():
    assert report("0.00.1 I srv  llama_server: listening on http://127.0.0.1:1\n").footprint() is None


def test_buffer_names_say_which_memory():
    assert [device_of(name) for name in ("CPU", "CPU_Mapped", "CPU_REPACK", "CUDA_Host", "Metal", "Metal_Mapped")] \
        == [None] * 6
    assert [device_of(name) for name in ("CUDA0", "CUDA1_Split", "ROCm0", "Vulkan2", "SYCL0")] \
        == ["CUDA0", "CUDA1", "ROCm0", "Vulkan2", "SYCL0"]
