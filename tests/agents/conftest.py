"""Fixtures of the real-agent tests: scripted models an agent can work with, a `nexa serve` at its
defaults serving them, and each agent installed from npm into the test cache (tests/fixtures/agents.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nexa.store import ModelRef, Store
from nexa.store.importer import import_local
from tests.conftest import ServerProcess, cache_dir
from tests.fixtures.agents import AGENTS, AgentUnavailable, install, offline_env
from tests.fixtures.tiny_models import QWEN3_TEMPLATE, make_chat_llm

ANSWER = "Paris is the capital of France."
DONE = "I created made.txt for you."
# Each agent's own shell tool, called to create made.txt in the agent's working folder.
TOOL_CALLS = {
    "claude": ("Bash", {"command": "echo made by claude > made.txt", "description": "Create made.txt"}),
    "codex": ("exec_command", {"cmd": "echo made by codex > made.txt"}),
    "opencode": ("bash", {"command": "echo made by opencode > made.txt"}),
}
# Seconds one agent run may take: its 30-80 KB first prompt is processed on a shared CPU.
RUN_TIMEOUT = 900


def _agent_model(path: Path, script: list[str], after_tool: list[str] | None = None) -> None:
    """A Qwen3-template model trained for 128k tokens, as small as the engine allows (one layer, width 32)
    and with a word vocabulary, so an agent's long prompt is processed in seconds."""
    make_chat_llm(str(path), "qwen3", script=script, after_tool=after_tool, template=QWEN3_TEMPLATE, n_ctx=131072,
                  n_embd=32, n_head=1, n_layer=1, words=True)


@pytest.fixture(scope="session")
def agent_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """test/agent-answer always answers ANSWER; test/agent-<name> calls the agent's shell tool, then, once
    the tool's result is in its prompt, says DONE."""
    files = tmp_path_factory.mktemp("agent-models")
    store = Store(tmp_path_factory.mktemp("agent-data"))
    models = {"answer": ([ANSWER], None)}
    for agent, (tool, arguments) in TOOL_CALLS.items():
        call = "\n" + json.dumps({"name": tool, "arguments": arguments}) + "\n"
        models[agent] = (["<tool_call>", call, "</tool_call>"], [DONE])
    for name, (script, after_tool) in models.items():
        folder = files / name
        folder.mkdir()
        _agent_model(folder / f"agent-{name}.gguf", script, after_tool)
        import_local(store, ModelRef.parse(f"test/agent-{name}"), folder, None)
    return store


@pytest.fixture(scope="session")
def agent_server(agent_store: Store) -> Iterator[ServerProcess]:
    """`nexa serve` at its default engine settings: the context it gives a model is its own choice."""
    process = ServerProcess(agent_store.root, engine=(), startup_timeout=60)
    yield process
    process.stop()


@pytest.fixture(scope="session", params=sorted(AGENTS))
def agent(request: pytest.FixtureRequest) -> tuple[str, Path]:
    """An agent's name and the folder of its installed executable; skipped where it cannot be installed."""
    try:
        executable = install(AGENTS[request.param], cache_dir())
    except AgentUnavailable as exc:
        pytest.skip(str(exc))
    return request.param, executable.parent


def run_agent(agent: tuple[str, Path], server: ServerProcess, model: str, args: list[str], workdir: Path,
              home: Path) -> subprocess.CompletedProcess[str]:
    """`nexa launch AGENT MODEL -- ARGS` in `workdir`, headless, with a fresh home and the agent on PATH."""
    name, bin_dir = agent
    env = offline_env(home, cache_dir())
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", NEXA_HOST=server.base_url)
    return subprocess.run([sys.executable, "-m", "nexa", "launch", name, model, "--", *args], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)
