"""The interactive chat of `nexa infer` and `nexa run`: read a prompt, stream the answer, repeat."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory
from prompt_toolkit.key_binding import KeyBindings
from rich.console import Console
from rich.text import Text

from nexa.cli.client import Answer, Delta, NexaClient, Sampling
from nexa.cli.conversation import Conversation
from nexa.errors import NexaError

FENCE = '"""'
HELP = """\
Type a message and press Enter. For several lines, press Alt-Enter (Esc then Enter) for a
new line, or open and close a block with \"\"\". Ctrl-C stops an answer; Ctrl-D leaves.
With a vision or audio model, name image or audio files in the message (quote paths that
hold spaces): describe ~/photos/cat.jpg
  /help           this help
  /exit           leave (also /quit, Ctrl-D)
  /clear          forget the conversation (the system prompt stays)
  /system TEXT    set the system prompt (no TEXT: remove it)
  /think          show or hide the model's reasoning
  /save FILE      write the conversation as JSON
  /load FILE      continue a conversation saved with /save"""


def print_answer(deltas: Iterable[Delta], console: Console, show_think: bool) -> None:
    """Print deltas as they come: reasoning dimmed (or not at all), then the answer."""
    previous = None
    for delta in deltas:
        if delta.kind == "reasoning" and not show_think:
            continue
        if previous == "reasoning" and delta.kind == "content":
            console.print()
        previous = delta.kind
        style = "dim" if delta.kind == "reasoning" else None
        console.print(delta.text, end="", style=style, markup=False, highlight=False, soft_wrap=True)


def print_tool_calls(answer: Answer, console: Console) -> None:
    for call in answer.tool_calls:
        function = call["function"]
        # Text, not markup: the model's arguments may hold [brackets].
        console.print(Text.assemble(("→ tool call ", "cyan"), f"{function['name']}({function['arguments']})"))


class Repl:
    """One chat session on a terminal; the conversation lives in `conversation`, input history on disk."""

    def __init__(
        self,
        client: NexaClient,
        model: str,
        conversation: Conversation,
        sampling: Sampling,
        console: Console,
        history: Path,
        show_think: bool = True,
        tools: list[dict] | None = None,
    ):
        self.client = client
        self.model = model
        self.conversation = conversation
        self.sampling = sampling
        self.console = console
        self.show_think = show_think
        self.tools = tools
        history.parent.mkdir(parents=True, exist_ok=True)
        self._session: PromptSession[str] = PromptSession(history=FileHistory(str(history)), key_bindings=_keys())
        self._commands: dict[str, Callable[[str], bool]] = {
            "/help": self._help, "/exit": self._exit, "/quit": self._exit, "/clear": self._clear,
            "/system": self._system, "/think": self._think, "/save": self._save, "/load": self._load,
        }

    def run(self) -> None:
        self.console.print(f"[bold]{self.model}[/] — /help for commands, Ctrl-D to leave", highlight=False)
        while True:
            try:
                text = self._read()
            except KeyboardInterrupt:
                continue  # Ctrl-C at the prompt clears the line, as in a shell
            except EOFError:
                return
            if not text.strip():
                continue
            if text.startswith("/"):
                if not self._command(text):
                    return
                continue
            self._turn(text)

    def _read(self) -> str:
        text = self._session.prompt(">>> ")
        if not text.lstrip().startswith(FENCE):
            return text
        lines = [text.lstrip()[len(FENCE):]]
        while not lines[-1].rstrip().endswith(FENCE):
            lines.append(self._session.prompt("... "))
        lines[-1] = lines[-1].rstrip()[: -len(FENCE)]
        return "\n".join(lines).strip("\n")

    def _turn(self, text: str) -> None:
        """Ask, print the answer as it streams, and keep it; a prompt that got no answer is forgotten."""
        self.conversation.add_user(text)
        stream = None
        try:
            stream = self.client.stream_chat(self.model, self.conversation.messages, self.sampling, self.tools)
            print_answer(stream, self.console, self.show_think)
        except KeyboardInterrupt:  # also while the prompt is still being read, before the first token
            self.console.print("\n[yellow]stopped[/]", end="")
        except NexaError as exc:
            self.console.print(f"\n[red]error:[/] {exc.message}", end="", highlight=False)
        finally:
            if stream is not None:
                stream.close()  # closing the HTTP stream makes the server stop generating
        self.console.print()
        answer = stream.answer if stream is not None else None
        if answer is None or not (answer.content or answer.tool_calls):
            self.conversation.undo_user()
            return
        print_tool_calls(answer, self.console)
        self.conversation.add(answer.message())
        self.console.print(answer.stats(), style="dim", highlight=False)

    def _command(self, text: str) -> bool:
        """Run a /command; False means leave."""
        name, _, argument = text.strip().partition(" ")
        command = self._commands.get(name.lower())
        if command is None:
            self.console.print(f"unknown command {name}; /help lists them", style="yellow", highlight=False)
            return True
        try:
            return command(argument.strip())
        except NexaError as exc:
            self.console.print(f"[red]error:[/] {exc.message}", highlight=False)
            return True

    def _help(self, _: str) -> bool:
        self.console.print(HELP, markup=False, highlight=False)
        return True

    def _exit(self, _: str) -> bool:
        return False

    def _clear(self, _: str) -> bool:
        self.conversation.clear()
        self.console.print("conversation cleared", style="dim")
        return True

    def _system(self, text: str) -> bool:
        self.conversation.system = text or None
        self.console.print("system prompt set" if text else "system prompt removed", style="dim")
        return True

    def _think(self, _: str) -> bool:
        self.show_think = not self.show_think
        self.console.print("reasoning shown" if self.show_think else "reasoning hidden", style="dim")
        return True

    def _save(self, path: str) -> bool:
        if not path:
            raise NexaError("give a file: /save chat.json")
        self.conversation.save(Path(path))
        self.console.print(f"saved {_count(self.conversation.messages)} to {path}", style="dim", highlight=False)
        return True

    def _load(self, path: str) -> bool:
        if not path:
            raise NexaError("give a file: /load chat.json")
        self.conversation.load(Path(path))
        self.console.print(f"loaded {_count(self.conversation.messages)} from {path}", style="dim", highlight=False)
        for message in self.conversation.turns[-2:]:
            self.console.print(f"{message['role']}: {_text_of(message)}", style="dim", markup=False, highlight=False)
        return True


def _count(messages: list[Any]) -> str:
    return f"{len(messages)} message{'' if len(messages) == 1 else 's'}"


def _text_of(message: dict[str, Any]) -> str:
    content = message.get("content") or ""
    if isinstance(content, list):
        return " ".join(part.get("text", f"[{part.get('type')}]") for part in content)
    return content if isinstance(content, str) else json.dumps(content)


def _keys() -> KeyBindings:
    keys = KeyBindings()

    @keys.add("escape", "enter")
    def _newline(event: Any) -> None:
        """Alt-Enter (or Esc, Enter) adds a line instead of sending."""
        event.current_buffer.insert_text("\n")

    return keys
