"""An agent-shaped conversation at nexa's default settings: a long system prompt and tool list, 6 turns, and a
short side request (a title, as agents ask for) between turns, through /v1/messages, /v1/responses and
/v1/chat/completions. Per turn: prompt tokens the engine processed (not served from its prompt cache) against the
prompt's size, and time to first token; then the context each model got and its memory against the budget.

    .venv/bin/python bench/agents.py [--turns 6] [--dialects messages,responses,chat] [--models starter,gemma,long]

Models: `starter` is SmolLM2-135M-Instruct (trained context 8,192, so its system prompt is ~7,000 tokens to leave
room for 6 turns); `gemma` is gemma-3-270m from PyPI (trained context 32,768; a ~20,000-token system prompt);
`long` is the test suite's tiny generated model trained for 131,072 tokens (one token a
character), with a ~20,000-token system prompt: real engine work on a toy network, so its times show the prompt
cache, not a real model's speed. Targets: turns 2..6 process at most 5% of their prompt, and their time to first
token is at most 10% of turn 1's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from harness import gemma_store, serve, starter_store

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tiny-model generator lives in tests/
from tests.fixtures.tiny_models import QWEN3_TEMPLATE, make_chat_llm  # noqa: E402

from nexa.store import ModelRef, Store  # noqa: E402
from nexa.store.importer import import_local  # noqa: E402

TOOLS = [
    {"name": name, "description": f"{text} " * 6, "parameters": {
        "type": "object", "properties": {arg: {"type": "string", "description": f"The {arg} to use."} for arg in args},
        "required": list(args)}}
    for name, text, args in [
        ("bash", "Run a shell command in the workspace and return its output.", ("command",)),
        ("read_file", "Read a file of the workspace, with line numbers.", ("path",)),
        ("write_file", "Create or overwrite a file of the workspace.", ("path", "content")),
        ("edit_file", "Replace one exact string of a file by another.", ("path", "old", "new")),
        ("glob", "List the files whose paths match a pattern.", ("pattern",)),
        ("grep", "Search file contents for a regular expression.", ("pattern", "path")),
        ("web_fetch", "Fetch a URL and return its text.", ("url",)),
        ("todo_write", "Record the task list of the current job.", ("items",)),
    ]
]
RULES = [
    "Read the relevant files before changing them, and keep each change small.",
    "Prefer the project's existing helpers to new code; never duplicate logic.",
    "Run the tests that cover a change before saying it is done.",
    "Explain what you did in two sentences at most, with the files you touched.",
    "Never print secrets, tokens or keys, even when a file contains them.",
    "Ask before deleting files or running commands that change the system.",
]
USER_TURNS = ["Find where the server reads its settings.", "Add a flag for the log format.",
              "Now write a test for it.", "Run the tests.", "Fix the failing one.", "Summarise the change."]


def system_prompt(chars: int) -> str:
    """An agent's system prompt of about `chars` characters: numbered rules, as agents' prompts are."""
    lines, n = ["You are a coding agent working in the user's repository."], 0
    while sum(map(len, lines)) < chars:
        lines.append(f"{n + 1}. {RULES[n % len(RULES)]} (section {n // len(RULES) + 1})")
        n += 1
    return "\n".join(lines)


@dataclass
class Turn:
    prompt: int  # tokens in the prompt
    processed: int  # of which the engine processed (the rest came from its prompt cache)
    ttft: float  # seconds to the first output token
    reply: str


class Dialect:
    """How one API spells a conversation and reports its usage."""

    path = ""
    tools = True  # False: the model's template cannot render tools; the tool list is then part of the system prompt

    def body(self, system: str, history: list[tuple[str, str]], max_tokens: int) -> dict[str, Any]:
        raise NotImplementedError

    def usage(self, event: dict[str, Any]) -> tuple[int, int] | None:
        """(prompt tokens, processed tokens) if `event` carries the final usage."""
        raise NotImplementedError

    def text(self, event: dict[str, Any]) -> str:
        raise NotImplementedError


class Chat(Dialect):
    path = "/v1/chat/completions"

    def body(self, system, history, max_tokens):
        return {"messages": [{"role": "system", "content": system}, *({"role": r, "content": c} for r, c in history)],
                **({"tools": [{"type": "function", "function": tool} for tool in TOOLS]} if self.tools else {}),
                "max_tokens": max_tokens, "stream": True, "stream_options": {"include_usage": True}}

    def usage(self, event):
        if not event.get("usage"):
            return None
        usage = event["usage"]
        return usage["prompt_tokens"], usage["prompt_tokens"] - usage["prompt_tokens_details"]["cached_tokens"]

    def text(self, event):
        return "".join((c.get("delta") or {}).get("content") or "" for c in event.get("choices") or [])


class Messages(Dialect):
    path = "/v1/messages"

    def body(self, system, history, max_tokens):
        return {"system": system, "messages": [{"role": r, "content": c} for r, c in history],
                **({"tools": [{"name": t["name"], "description": t["description"], "input_schema": t["parameters"]}
                               for t in TOOLS]} if self.tools else {}), "max_tokens": max_tokens, "stream": True}

    def usage(self, event):
        if event.get("type") != "message_delta":
            return None
        usage = event["usage"]
        return usage["input_tokens"] + usage["cache_read_input_tokens"], usage["input_tokens"]

    def text(self, event):
        return (event.get("delta") or {}).get("text") or "" if event.get("type") == "content_block_delta" else ""


class Responses(Dialect):
    path = "/v1/responses"

    def body(self, system, history, max_tokens):
        return {"instructions": system, "input": [{"role": r, "content": c} for r, c in history],
                **({"tools": [{"type": "function", **tool} for tool in TOOLS]} if self.tools else {}),
                "max_output_tokens": max_tokens, "stream": True, "store": False}

    def usage(self, event):
        if event.get("type") not in ("response.completed", "response.incomplete"):  # incomplete: max_output_tokens
            return None
        usage = event["response"]["usage"]
        return usage["input_tokens"], usage["input_tokens"] - usage["input_tokens_details"]["cached_tokens"]

    def text(self, event):
        return event.get("delta") or "" if event.get("type") == "response.output_text.delta" else ""


DIALECTS = {"messages": Messages(), "responses": Responses(), "chat": Chat()}


def ask(http: httpx.Client, dialect: Dialect, model: str, system: str, history: list[tuple[str, str]],
        max_tokens: int = 8) -> Turn:
    started, first, reply, usage = time.perf_counter(), None, "", None
    with http.stream("POST", dialect.path, json={"model": model, **dialect.body(system, history, max_tokens)}) as r:
        if r.status_code != 200:
            raise SystemExit(f"{dialect.path} answered {r.status_code}: {r.read().decode()[:300]}")
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if first is None and (dialect.text(event) or event.get("type") in (
                    "content_block_start", "response.output_item.added") or event.get("choices")):
                first = time.perf_counter()
            reply += dialect.text(event)
            usage = dialect.usage(event) or usage
    assert usage is not None, f"{dialect.path} sent no usage"
    return Turn(usage[0], usage[1], (first or time.perf_counter()) - started, reply)


def conversation(http: httpx.Client, dialect: Dialect, model: str, system: str, turns: int) -> list[Turn]:
    """`turns` turns of one conversation; between two turns, a side request with a prompt of its own."""
    history: list[tuple[str, str]] = []
    done = []
    for n in range(turns):
        history.append(("user", USER_TURNS[n % len(USER_TURNS)]))
        turn = ask(http, dialect, model, system, history)
        print(f"  {dialect.path} turn {n + 1}: {turn.processed} of {turn.prompt} prompt tokens processed, "
              f"first token after {turn.ttft:.2f} s", flush=True)
        done.append(turn)
        history.append(("assistant", turn.reply or "Done."))
        ask(http, dialect, model, "Write a five-word title for this request.", [("user", history[-2][1])], 8)
    return done


@contextmanager
def long_context_store() -> Iterator[tuple[Store, str]]:
    """A temporary store with the suite's tiny model trained for 131,072 tokens (Qwen3 template)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "files"
        folder.mkdir()
        make_chat_llm(str(folder / "long.gguf"), "qwen3", script=["Done", "."], n_ctx=131072, template=QWEN3_TEMPLATE)
        store = Store(Path(tmp) / "data")
        import_local(store, ModelRef.parse("bench/long-context"), folder, None)
        yield store, "bench/long-context"


MODELS = {"starter": (starter_store, 20_000), "gemma": (gemma_store, 60_000), "long": (long_context_store, 20_000)}


def report(label: str, turns: list[Turn]) -> tuple[float, float]:
    """Print one conversation's turns; return (worst share processed, worst TTFT ratio) over turns 2..N."""
    print(f"\n{label}\n| turn | prompt tokens | processed | share | TTFT (s) | TTFT / turn 1 |\n|---|---|---|---|---|---|")
    for n, turn in enumerate(turns, 1):
        print(f"| {n} | {turn.prompt} | {turn.processed} | {turn.processed / turn.prompt:.1%} | {turn.ttft:.3f} | "
              f"{turn.ttft / turns[0].ttft:.2f} |")
    later = turns[1:]
    return max(t.processed / t.prompt for t in later), max(t.ttft / turns[0].ttft for t in later)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--dialects", default="messages,responses,chat")
    parser.add_argument("--models", default="starter,gemma,long")
    args = parser.parse_args()
    summary = []
    for name in args.models.split(","):
        make_store, chars = MODELS[name]
        with make_store() as (store, model), serve(store) as bench, \
                httpx.Client(base_url=bench.router_url, timeout=900) as http:
            manifest, quant = bench.manager.resolve(model)
            planned = bench.manager.planner.plan(manifest, quant)
            # the starter's 8,192 tokens: ~4 characters a token leaves room for 6 turns and the tools
            system = system_prompt(chars)
            tools = "tools" in http.get(f"/v1/models/{model}").json()["capabilities"]
            if not tools:  # the starter's template renders no tools: they go in the system prompt, as text
                system += "\n\nTools:\n" + json.dumps(TOOLS, indent=1)
            for dialect in args.dialects.split(","):
                DIALECTS[dialect].tools = tools
                # Each dialect's agent has a prompt of its own: its first turn finds nothing in the cache.
                own = f"You are {dialect}-agent. {system}"
                turns = conversation(http, DIALECTS[dialect], model, own, args.turns)
                share, ttft = report(f"{name} ({model}) through {DIALECTS[dialect].path}", turns)
                summary.append((name, dialect, share, ttft))
            running = http.get("/v1/ps").json()
            held = next(m for m in running["data"] if m["id"].startswith(model.split(":")[0]))
            print(f"\n{name}: default context {held['ctx']:,} tokens ({planned.spec.kv_cache_type} KV cache, "
                  f"{held['parallel']} slots sharing it); estimated before loading {planned.need.describe()}, "
                  f"engine-reported {held['memory_estimate'] / 2**30:.2f} GiB, of a memory budget of "
                  f"{running['memory_budget'] / 2**30:.2f} GiB")
    print("\n| model | dialect | worst share processed, turns 2.. (target <= 5%) | worst TTFT / turn 1 (target <= 10%) |")
    print("|---|---|---|---|")
    for name, dialect, share, ttft in summary:
        print(f"| {name} | {dialect} | {share:.1%} | {ttft:.1%} |")


if __name__ == "__main__":
    main()
