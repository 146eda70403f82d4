"""`nexa infer MODEL --file REC` and `nexa run MODEL --file REC`: the transcript on stdout, in each format."""

from __future__ import annotations

import json
from pathlib import Path

from nexa.store import Store
from tests.cli.test_chat_cli import nexa
from tests.fixtures.media_samples import wav_bytes

AUDIO = "test/audio-qwen2a"
SCRIPT = "Hello from a scripted model."


def test_infer_prints_the_transcript_in_each_format(session_store: Store, tmp_path: Path):
    recording = tmp_path / "talk.wav"
    recording.write_bytes(wav_bytes(40.0))
    text = nexa(session_store, "infer", AUDIO, "--file", str(recording))
    assert text.returncode == 0, text.stderr
    # text is streamed as it comes: the first piece alone (its text starts early), then the rest in one request
    assert text.stdout == f"{SCRIPT} {SCRIPT}\n"
    srt = nexa(session_store, "infer", AUDIO, "--file", str(recording), "--format", "srt", "--translate")
    assert srt.stdout.startswith(f"1\n00:00:00,000 --> 00:00:29,750\n{SCRIPT}\n\n2\n00:00:29,750 --> 00:00:40,000\n")
    verbose = json.loads(nexa(session_store, "infer", AUDIO, "-f", str(recording), "--format", "verbose_json",
                              "--language", "fr").stdout)
    assert (verbose["language"], verbose["duration"], len(verbose["segments"])) == ("fr", 40.0, 2)


def test_infer_says_what_is_wrong_with_the_file_or_the_model(session_store: Store, tmp_path: Path):
    missing = nexa(session_store, "infer", AUDIO, "--file", str(tmp_path / "none.wav"))
    assert missing.returncode != 0 and "no recording at" in missing.stderr
    recording = tmp_path / "talk.wav"
    recording.write_bytes(wav_bytes(1.0))
    wrong = nexa(session_store, "infer", "test/qwen3-text", "--file", str(recording))
    assert wrong.returncode != 0 and "needs an audio model" in wrong.stderr
