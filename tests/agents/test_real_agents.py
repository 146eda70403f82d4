"""Claude Code, Codex and OpenCode, the real ones from npm (pinned in tests/fixtures/agents.py), run
headless through `nexa launch` against `nexa serve` at its defaults, on scripted models: each agent's
first request is answered, and a call of its own shell tool round-trips (the command runs, its result
goes back, and the model's answer to it comes out)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.agents.conftest import ANSWER, DONE, run_agent
from tests.conftest import ServerProcess

pytestmark = pytest.mark.agents

PROMPT = "Create the file made.txt."


def _headless(name: str, prompt: str) -> list[str]:
    """The agent's own one-shot mode, allowed to run its shell tool without asking."""
    return {
        "claude": ["-p", prompt, "--allowedTools", "Bash"],
        "codex": ["exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox", prompt],
        "opencode": ["run", prompt],
    }[name]


def _run(agent: tuple[str, Path], server: ServerProcess, model: str, tmp_path: Path) -> tuple[str, Path]:
    workdir = tmp_path / "work"
    workdir.mkdir()
    done = run_agent(agent, server, model, _headless(agent[0], PROMPT), workdir, tmp_path / "home")
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{agent[0]} exited {done.returncode}:\n{output[-3000:]}\nserver:\n{server.output[-3000:]}"
    return output, workdir


def test_first_request_is_answered(agent: tuple[str, Path], agent_server: ServerProcess, tmp_path: Path) -> None:
    output, _ = _run(agent, agent_server, "test/agent-answer", tmp_path)
    assert ANSWER in output


def test_tool_call_round_trips(agent: tuple[str, Path], agent_server: ServerProcess, tmp_path: Path) -> None:
    name = agent[0]
    output, workdir = _run(agent, agent_server, f"test/agent-{name}", tmp_path)
    assert (workdir / "made.txt").read_text().strip() == f"made by {name}"  # the agent ran the model's command
    assert DONE in output  # the model saw the command's result: it answers so only after a tool result
