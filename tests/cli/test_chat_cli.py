"""`nexa infer` and `nexa run` as a user runs them: the REPL through a pseudo-terminal, one-shot as a subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest
from PIL import Image

from nexa.cli.remote import server_url
from nexa.store import Store
from tests.conftest import ServerProcess, worker_pids

SCRIPTED = "test/qwen3-text"
SCRIPTED_ANSWER = "Hello from a scripted model."
PROMPT = ">>>"  # prompt_toolkit draws the prompt's trailing space as a cursor move
STATS = r"tokens · [\d.-]+ tok/s · first token [\d.]+ s"


def nexa_env(store: Store) -> dict[str, str]:
    # No cursor-position requests: pexpect's terminal does not answer them. Wide lines: no wrapped messages.
    return {**os.environ, "NEXA_DATADIR": str(store.root), "NEXA_THREADS": "1", "PROMPT_TOOLKIT_NO_CPR": "1",
            "TERM": "xterm-256color", "COLUMNS": "200"}


def spawn(store: Store, *args: str) -> pexpect.spawn:
    child = pexpect.spawn(sys.executable, ["-m", "nexa", *args], env=nexa_env(store), encoding="utf-8",
                          timeout=60, dimensions=(40, 200))
    child.expect(PROMPT)
    return child


def nexa(store: Store, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nexa", *args], env=nexa_env(store), input=stdin or "",
                          capture_output=True, text=True, timeout=120)


def ask(child: pexpect.spawn, text: str, expected: str) -> None:
    child.sendline(text)
    child.expect(expected)
    child.expect(STATS)
    child.expect(PROMPT)


def command(child: pexpect.spawn, text: str, expected: str) -> None:
    child.sendline(text)
    child.expect(expected)
    child.expect(PROMPT)


def test_repl_keeps_the_conversation_and_saves_clears_and_loads_it(session_store: Store, tmp_path: Path):
    saved, resaved, retold = tmp_path / "chat.json", tmp_path / "cleared.json", tmp_path / "terse.json"
    child = spawn(session_store, "infer", SCRIPTED, "--system", "Be brief.")
    ask(child, "Hi there", SCRIPTED_ANSWER)
    ask(child, "And again?", SCRIPTED_ANSWER)
    command(child, f"/save {saved}", "saved 5 messages")
    command(child, "/clear", "conversation cleared")
    command(child, f"/save {resaved}", "saved 1 message ")
    command(child, f"/load {saved}", "loaded 5 messages")
    command(child, "/system Be terse.", "system prompt set")
    command(child, f"/save {retold}", "saved 5 messages")
    command(child, "/nonsense", "unknown command /nonsense")
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    messages = json.loads(saved.read_text())
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant"]
    assert [m["content"] for m in messages[1:]] == ["Hi there", SCRIPTED_ANSWER, "And again?", SCRIPTED_ANSWER]
    assert json.loads(resaved.read_text()) == [{"role": "system", "content": "Be brief."}]
    assert json.loads(retold.read_text()) == [{"role": "system", "content": "Be terse."}, *messages[1:]]
    assert "Hi there" in (session_store.root / "history").read_text()  # line history persists


def test_repl_reads_a_multi_line_block(session_store: Store, server: ServerProcess, tmp_path: Path):
    saved = tmp_path / "chat.json"
    child = spawn(session_store, "run", SCRIPTED, "--host", server.base_url)
    child.sendline('"""first line')
    child.expect(r"\.\.\.")
    ask(child, 'second line"""', SCRIPTED_ANSWER)
    command(child, f"/save {saved}", "saved")
    child.sendeof()  # Ctrl-D leaves
    child.expect(pexpect.EOF)
    assert json.loads(saved.read_text())[0]["content"] == "first line\nsecond line"


def test_run_talks_to_a_running_server_over_two_turns(session_store: Store, server: ServerProcess, starter_name: str):
    child = spawn(session_store, "run", starter_name, "--host", server.base_url, "--temperature", "0",
                  "--max-tokens", "24")
    ask(child, "What is the capital of France?", "Paris")
    ask(child, "And what language do people speak there?", "French")
    child.sendline("/exit")
    child.expect(pexpect.EOF)


def test_ctrl_c_stops_the_answer_and_keeps_the_repl(session_store: Store, server: ServerProcess, starter_name: str):
    child = spawn(session_store, "run", starter_name, "--host", server.base_url.removeprefix("http://"),
                  "--temperature", "0", "--max-tokens", "3000")
    child.sendline("Count from 1 to 500, one number per line.")
    child.expect(r"\b4\b")  # the answer is streaming
    child.sendintr()
    child.expect("stopped")
    child.expect(STATS)
    child.expect(PROMPT)
    ask(child, "What is the capital of France?", "Paris")
    child.sendline("/exit")
    child.expect(pexpect.EOF)


def test_one_shot_prints_only_the_answers_of_each_turn(session_store: Store):
    result = nexa(session_store, "infer", SCRIPTED, "-p", "Hi", "-p", "Again")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{SCRIPTED_ANSWER}\n{SCRIPTED_ANSWER}\n"


def test_one_shot_reads_a_piped_prompt(session_store: Store, server: ServerProcess, starter_name: str):
    result = nexa(session_store, "run", starter_name, "--host", server.base_url, "--temperature", "0",
                  "--max-tokens", "20", stdin="What is the capital of France?")
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout


def test_json_prints_the_raw_response(session_store: Store, server: ServerProcess):
    result = nexa(session_store, "run", SCRIPTED, "--host", server.base_url, "-p", "Hi", "--json", "--seed", "1",
                  "--top-k", "5", "--top-p", "0.9")
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply["object"] == "chat.completion"
    assert reply["choices"][0]["message"]["content"] == SCRIPTED_ANSWER


def test_hide_think_hides_reasoning_until_think_shows_it_dimmed(session_store: Store, server: ServerProcess):
    child = spawn(session_store, "run", "test/qwen3-think", "--host", server.base_url, "--hide-think")
    child.sendline("Weather?")
    child.expect("It is sunny in Paris.")
    assert "The user asks" not in child.before
    child.expect(PROMPT)
    command(child, "/think", "reasoning shown")
    ask(child, "Weather again?", re.escape("\x1b[2mThe user asks about weather."))
    child.sendline("/exit")
    child.expect(pexpect.EOF)


def test_repl_prints_tool_calls(session_store: Store, server: ServerProcess, tmp_path: Path):
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([{"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }}]))
    child = spawn(session_store, "run", "test/qwen3-tool", "--host", server.base_url, "--tools", str(tools))
    ask(child, "Weather in Paris?", re.escape('get_weather({"city": "Paris"})'))
    child.sendline("/exit")
    child.expect(pexpect.EOF)


def test_repl_sends_image_files_named_in_the_prompt_to_a_vision_model(
    session_store: Store, server: ServerProcess, tmp_path: Path
):
    image, saved = tmp_path / "red dot.png", tmp_path / "chat.json"
    Image.new("RGB", (32, 32), "red").save(image)
    child = spawn(session_store, "run", "test/vision-gemma3", "--host", server.base_url)
    ask(child, f'What is in "{image}"?', SCRIPTED_ANSWER)
    command(child, f"/save {saved}", "saved")
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    assert json.loads(saved.read_text())[0]["content"] == [
        {"type": "text", "text": "What is in ?"}, {"type": "image_url", "image_url": str(image)},
    ]


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("example.org:8080", "http://example.org:8080"),
        ("example.org", "http://example.org:18181"),
        ("0.0.0.0:9000", "http://127.0.0.1:9000"),
        ("[::1]:9000", "http://[::1]:9000"),
        ("https://nexa.example.org/", "https://nexa.example.org/"),
    ],
)
def test_server_url_accepts_what_nexa_serve_binds(host: str, url: str):
    assert server_url(host) == url


def test_infer_pulls_a_missing_model_first_and_stops_its_worker_on_exit(hub_env: dict[str, str]):
    result = subprocess.run([sys.executable, "-m", "nexa", "infer", "test-org/Tiny-GGUF", "-p", "Hi"],
                            env={**hub_env, "NEXA_THREADS": "1"}, input="", capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{SCRIPTED_ANSWER}\n"
    assert "pulling it first" in result.stderr
    assert worker_pids(Path(hub_env["NEXA_DATADIR"])) == []
