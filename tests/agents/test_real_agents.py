"""Claude Code, Codex and OpenCode, the real ones from npm (pinned in tests/fixtures/agents.py), run
headless through `nexa launch` against `nexa serve` at its defaults, on scripted models: each agent's
first request is answered, and a call of its own shell tool round-trips (the command runs, its result
goes back, and the model's answer to it comes out); and the next session in the same project takes its long
prompt from the engine's prompt cache instead of processing it again."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.agents.conftest import ANSWER, DONE, run_agent
from tests.conftest import ServerProcess, metric

pytestmark = pytest.mark.agents

PROMPT = "Create the file made.txt."
# The share of a next session's prompt that must come from the cache: everything before the user's words. Claude
# Code 2.1.328 puts a 9 KB system message of environment notes after them (kept at its place), about a fifth of
# the prompt on the test models.
REUSED = {"claude": 0.75, "codex": 0.9, "opencode": 0.9}


def _headless(name: str, prompt: str) -> list[str]:
    """The agent's own one-shot mode, allowed to run its shell tool without asking."""
    return {
        "claude": ["-p", prompt, "--allowedTools", "Bash"],
        "codex": ["exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox", prompt],
        "opencode": ["run", prompt],
    }[name]


def _run(agent: tuple[str, Path], server: ServerProcess, model: str, tmp_path: Path,
         prompt: str = PROMPT) -> tuple[str, Path]:
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    done = run_agent(agent, server, model, _headless(agent[0], prompt), workdir, tmp_path / "home")
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


def test_the_next_session_reuses_the_prompt(agent: tuple[str, Path], agent_server: ServerProcess,
                                             tmp_path: Path) -> None:
    """Two sessions in a row in one project, as a user starts them: the second's system prompt and tools (tens of
    thousands of tokens) come from the engine's prompt cache. Claude Code's per-session billing header, first in
    its system prompt, would make the whole prompt differ if nexa passed it on."""
    model = "test/agent-answer"
    with httpx.Client(base_url=agent_server.base_url, timeout=30) as http:
        _run(agent, agent_server, model, tmp_path, "What is the capital of France?")
        model_id = http.get(f"/v1/models/{model}").json()["id"]
        prompt, cached = (metric(http, name, model=model_id)
                          for name in ("nexa_prompt_tokens_total", "nexa_prompt_cached_tokens_total"))
        output, _ = _run(agent, agent_server, model, tmp_path, "Which city is the capital of France?")
        prompt = metric(http, "nexa_prompt_tokens_total", model=model_id) - prompt
        cached = metric(http, "nexa_prompt_cached_tokens_total", model=model_id) - cached
    assert ANSWER in output
    share = REUSED[agent[0]]
    assert prompt > 5000 and cached >= share * prompt, f"{agent[0]}: {cached:.0f} of {prompt:.0f} prompt tokens cached"
