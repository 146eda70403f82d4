"""What infer and run do once connected, called in-process against the session server: output formats."""

from __future__ import annotations

import json
import re
import wave
from pathlib import Path

import pytest

from nexa.cli.talk import Talk, converse
from nexa.errors import NexaError
from tests.conftest import ServerProcess


def ask(prompts: list[str] | None = None, *, raw_json: bool = False, tools: Path | None = None,
        query: str | None = None, documents: list[str] | None = None) -> Talk:
    return Talk.from_flags(prompts, None, None, None, None, None, None, raw_json, False, tools, query, documents)


def test_audio_files_named_in_a_prompt_reach_an_audio_model(server: ServerProcess, tmp_path: Path, capsys):
    audio = tmp_path / "silence.wav"
    with wave.open(str(audio), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(16000)
        out.writeframes(b"\0\0" * 16000)
    converse(server.base_url, None, "test/audio-qwen2a", ask([f"Transcribe {audio}"], raw_json=True), tmp_path / "h")
    assert json.loads(capsys.readouterr().out)["usage"]["prompt_tokens"] > 100  # the audio's tokens were in the prompt


def test_an_embedder_prints_each_vectors_size_and_head(server: ServerProcess, tmp_path: Path, capsys):
    converse(server.base_url, None, "test/bert-embed", ask(["hello", "world"]), tmp_path / "h")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert all(re.fullmatch(r"32 dimensions: \[(-?\d\.\d{4}, ){8}\.\.\.\]", line) for line in lines)


def test_a_reranker_prints_documents_best_first(server: ServerProcess, tmp_path: Path, capsys):
    documents = ["Paris is the capital of France.", "Bananas are yellow.", "France borders Spain."]
    converse(server.base_url, None, "test/bert-rerank", ask(query="capital of France", documents=documents),
             tmp_path / "h")
    scores = [line.split(None, 1) for line in capsys.readouterr().out.splitlines()]
    assert sorted(text for _, text in scores) == sorted(documents)
    assert [float(s) for s, _ in scores] == sorted((float(s) for s, _ in scores), reverse=True)


def test_a_reranker_without_documents_says_what_to_give(server: ServerProcess, tmp_path: Path):
    with pytest.raises(NexaError, match="-q QUERY -d DOC"):
        converse(server.base_url, None, "test/bert-rerank", ask(["Hi"]), tmp_path / "h")


def test_a_tools_file_must_be_a_json_list(tmp_path: Path):
    tools = tmp_path / "tools.json"
    tools.write_text('{"type": "function"}')
    with pytest.raises(NexaError, match="JSON list of tools"):
        ask(tools=tools)
