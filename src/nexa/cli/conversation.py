"""A chat's messages: what is sent each turn, what /save writes and /load reads back."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from nexa.errors import NexaError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"}
AUDIO_SUFFIXES = {".wav", ".mp3", ".flac"}
# A quoted path (so it may hold spaces) or any run of non-blanks.
_CANDIDATE = re.compile(r"\"([^\"]+)\"|'([^']+)'|(\S+)")


def media_parts(text: str) -> list[dict[str, Any]]:
    """Content parts for a prompt that names image or audio files that exist; [] when it names none.

    The files leave the text and become parts in nexa's form (a path the server reads),
    so `describe ~/cat.png` sends the text "describe" and the picture.
    """
    media: list[dict[str, Any]] = []
    kept: list[str] = []
    last = 0
    for match in _CANDIDATE.finditer(text):
        path = Path(next(g for g in match.groups() if g)).expanduser()
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES | AUDIO_SUFFIXES and path.is_file():
            kept.append(text[last:match.start()])
            last = match.end()
            kind = "image_url" if suffix in IMAGE_SUFFIXES else "input_audio"
            media.append({"type": kind, kind: str(path.resolve())})
    if not media:
        return []
    rest = " ".join("".join(kept + [text[last:]]).split())
    return ([{"type": "text", "text": rest}] if rest else []) + media


class Conversation:
    """The messages so far; the system prompt survives /clear."""

    def __init__(self, system: str | None = None, media: bool = False):
        self.system = system
        self.media = media  # a vlm: file paths in prompts become image/audio parts
        self.turns: list[dict[str, Any]] = []

    @property
    def messages(self) -> list[dict[str, Any]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.turns

    def add_user(self, text: str) -> None:
        parts = media_parts(text) if self.media else []
        self.turns.append({"role": "user", "content": parts or text})

    def add(self, message: dict[str, Any]) -> None:
        self.turns.append(message)

    def undo_user(self) -> None:
        """Forget the last prompt: it got no answer (the request failed)."""
        if self.turns and self.turns[-1]["role"] == "user":
            self.turns.pop()

    def clear(self) -> None:
        self.turns = []

    def save(self, path: Path) -> None:
        path.expanduser().write_text(json.dumps(self.messages, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    def load(self, path: Path) -> None:
        """Replace the conversation with a JSON list of messages (what /save writes)."""
        path = path.expanduser()
        try:
            messages = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise NexaError(f"cannot read {path}: {exc}; give a JSON file written by /save") from exc
        if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages):
            raise NexaError(f"{path} is not a list of messages; give a JSON file written by /save")
        systems = [m for m in messages if m["role"] == "system"]
        self.system = systems[0].get("content") if systems else None
        self.turns = [m for m in messages if m["role"] != "system"]
