import pytest

from nexa.store.quant import is_mmproj_name, parse_quant, shard_group, shard_info


@pytest.mark.parametrize(
    ("filename", "quant"),
    [
        ("Qwen3-1.7B-Q4_K_M.gguf", "Q4_K_M"),
        ("model.q4_k_s.gguf", "Q4_K_S"),
        ("model-Q5_K_L.gguf", "Q5_K_L"),
        ("model-Q2_K.gguf", "Q2_K"),
        ("model-Q3_K_M.gguf", "Q3_K_M"),
        ("model-Q6_K.gguf", "Q6_K"),
        ("model-Q8_0.gguf", "Q8_0"),
        ("model-Q4_0.gguf", "Q4_0"),
        ("model-Q4_1.gguf", "Q4_1"),
        ("model-Q5_0.gguf", "Q5_0"),
        ("model-Q5_1.gguf", "Q5_1"),
        ("model-IQ1_S.gguf", "IQ1_S"),
        ("model-IQ1_M.gguf", "IQ1_M"),
        ("model-IQ2_XXS.gguf", "IQ2_XXS"),
        ("model-IQ2_XS.gguf", "IQ2_XS"),
        ("model-IQ3_M.gguf", "IQ3_M"),
        ("model-IQ4_XS.gguf", "IQ4_XS"),
        ("model-IQ4_NL.gguf", "IQ4_NL"),
        ("model-F16.gguf", "F16"),
        ("model-fp16.gguf", "F16"),
        ("model-BF16.gguf", "BF16"),
        ("model-f32.gguf", "F32"),
        ("SmolLM2-135M-Instruct.Q4_1.gguf", "Q4_1"),
        ("gemma-3-27b-it-UD-Q4_K_XL.gguf", "Q4_K_XL"),
        ("Llama-3-70B-Q4_K_M-00001-of-00003.gguf", "Q4_K_M"),
        ("model.gguf", None),
        ("BQ4_K_M.gguf", None),
    ],
)
def test_parse_quant_reads_the_quant_from_the_file_name(filename, quant):
    assert parse_quant(filename) == quant


def test_split_shards_are_recognised_and_grouped():
    assert shard_info("x-Q8_0-00002-of-00003.gguf") == (2, 3)
    assert shard_info("x-Q8_0.gguf") is None
    assert shard_group("x-Q8_0-00002-of-00003.gguf") == shard_group("x-Q8_0-00001-of-00003.gguf") == "x-Q8_0.gguf"


def test_mmproj_is_recognised_anywhere_in_the_name():
    assert is_mmproj_name("mmproj-model-f16.gguf")
    assert is_mmproj_name("Qwen2.5-Omni-3B-mmproj-Q8_0.gguf")
    assert not is_mmproj_name("model-Q4_K_M.gguf")
