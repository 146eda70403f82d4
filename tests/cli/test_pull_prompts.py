"""On a terminal `nexa pull` asks for the model type and the quant; flags and --yes skip the questions."""

from __future__ import annotations

import sys
from pathlib import Path

import pexpect

from nexa.store import ModelType, Store


def spawn(env: dict[str, str], *args: str) -> pexpect.spawn:
    """`python -m nexa ARGS` on a pseudo-terminal, as a person runs it."""
    return pexpect.spawn(sys.executable, ["-m", "nexa", *args], env={**env, "TERM": "dumb"},
                         encoding="utf-8", timeout=60, dimensions=(40, 200))


def finish(child: pexpect.spawn) -> str:
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    return child.before


def test_prompts_offer_detected_type_and_quants_with_sizes_and_a_marked_default(hub_env):
    child = spawn(hub_env, "pull", "test-org/Tiny-GGUF")
    child.expect(r"Model type \[llm/vlm/embedder/reranker\] \(llm\):")
    child.sendline("")  # take the detected default
    child.expect(r"Q8_0 +1\.5 MB")
    child.expect(r"Q4_K_M +1\.5 MB +\(default\)")
    child.expect(r"Select quant version .*\(2\):")
    child.sendline("q8_0")  # by name, any case (a number works too)
    child.expect("pulled test-org/Tiny-GGUF:Q8_0")
    finish(child)
    manifest = Store(Path(hub_env["NEXA_DATADIR"])).get("test-org/Tiny-GGUF")
    assert manifest.model_type is ModelType.llm and list(manifest.quants) == ["Q8_0"]


def test_a_wrong_answer_is_asked_again_and_a_number_picks_a_quant(hub_env):
    child = spawn(hub_env, "pull", "test-org/Tiny-GGUF")
    child.expect("Model type")
    child.sendline("chatbot")
    child.expect("Please select one of the available options")
    child.sendline("embedder")
    child.expect("Select quant version")
    child.sendline("2")
    child.expect("pulled test-org/Tiny-GGUF:Q4_K_M")
    finish(child)
    assert Store(Path(hub_env["NEXA_DATADIR"])).get("test-org/Tiny-GGUF").model_type is ModelType.embedder


def test_flags_and_yes_skip_every_prompt_on_a_terminal(hub_env):
    output = finish(spawn(hub_env, "pull", "test-org/Vision-GGUF", "--yes"))
    assert "Model type" not in output and "Select quant" not in output and "No terminal" not in output
    output = finish(spawn(hub_env, "pull", "test-org/Tiny-GGUF:Q8_0", "--model-type", "llm"))
    assert "Model type" not in output and "Select quant" not in output
