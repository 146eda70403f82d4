"""The chat's messages: media paths in prompts, the system prompt, /save and /load files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nexa.cli.conversation import Conversation, media_parts
from nexa.errors import NexaError


def test_media_parts_lifts_existing_image_and_audio_paths_out_of_the_text(tmp_path: Path):
    image, audio = tmp_path / "my cat.PNG", tmp_path / "voice.wav"
    image.write_bytes(b"png")
    audio.write_bytes(b"wav")
    parts = media_parts(f'compare "{image}" with {audio} please')
    assert parts == [
        {"type": "text", "text": "compare with please"},
        {"type": "image_url", "image_url": str(image)},
        {"type": "input_audio", "input_audio": str(audio)},
    ]


def test_media_parts_ignores_missing_files_and_other_suffixes(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("hi")
    assert media_parts(f"read {tmp_path / 'notes.txt'} and {tmp_path / 'gone.png'}") == []


def test_only_a_media_conversation_turns_paths_into_parts(tmp_path: Path):
    image = tmp_path / "a.jpg"
    image.write_bytes(b"jpg")
    text, vision = Conversation(), Conversation(media=True)
    text.add_user(f"describe {image}")
    vision.add_user(f"{image}")
    assert text.turns == [{"role": "user", "content": f"describe {image}"}]
    assert vision.turns == [{"role": "user", "content": [{"type": "image_url", "image_url": str(image)}]}]


def test_clear_keeps_the_system_prompt_and_load_restores_it(tmp_path: Path):
    chat = Conversation(system="Be brief.")
    chat.add_user("hi")
    chat.add({"role": "assistant", "content": "hello"})
    chat.save(tmp_path / "chat.json")
    chat.clear()
    assert chat.messages == [{"role": "system", "content": "Be brief."}]
    other = Conversation()
    other.load(tmp_path / "chat.json")
    assert other.system == "Be brief."
    assert other.messages == json.loads((tmp_path / "chat.json").read_text())


def test_undo_user_forgets_only_an_unanswered_prompt():
    chat = Conversation()
    chat.add_user("hi")
    chat.add({"role": "assistant", "content": "hello"})
    chat.undo_user()
    assert len(chat.turns) == 2
    chat.add_user("again")
    chat.undo_user()
    assert len(chat.turns) == 2


@pytest.mark.parametrize("content", ['{"role": "user"}', "[1, 2]", "not json"])
def test_load_rejects_files_that_are_not_message_lists(tmp_path: Path, content: str):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(NexaError, match="written by /save"):
        Conversation().load(path)
