"""Streamed generation through each API dialect next to chat: aggregate generated tokens/s at
1 and 4 concurrent streams for OpenAI chat, OpenAI Responses, Anthropic Messages and Ollama's
/api/chat through the router, against chat straight from the worker, on the starter model.

    .venv/bin/python bench/dialects.py [--streams 1,4] [--tokens 128] [--runs 3]

Each dialect translates the same engine stream (chat passes bytes through), so the ratio
dialect/worker is what the translation costs. Rounds are interleaved across paths so drift in
machine load hits them alike; prompts differ per round so no path meets another's cache.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from harness import serve, starter_store

PROMPT = "Write a long story about a lighthouse keeper and the ships she guides, part {}."
SYSTEM = "You are a helpful assistant."


@dataclass(frozen=True)
class Dialect:
    path: str
    body: Callable[[str, str, int], dict]  # (model, prompt, max tokens) -> request body
    tokens: Callable[[dict], int | None]  # generated tokens, from the event that reports them


def _chat_tokens(event: dict) -> int | None:
    return (event.get("usage") or {}).get("completion_tokens")


def _responses_tokens(event: dict) -> int | None:
    done = event.get("type") in ("response.completed", "response.incomplete")
    return event["response"]["usage"]["output_tokens"] if done else None


def _messages_tokens(event: dict) -> int | None:
    return event["usage"]["output_tokens"] if event.get("type") == "message_delta" else None


def _ollama_tokens(event: dict) -> int | None:
    return event.get("eval_count") if event.get("done") else None


SAMPLING = {"temperature": 0, "seed": 1}
CHAT = Dialect(
    "/v1/chat/completions",
    lambda model, prompt, n: {"model": model, "stream": True, "max_tokens": n, **SAMPLING,
                              "stream_options": {"include_usage": True},
                              "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]},
    _chat_tokens,
)
DIALECTS = {
    "chat": CHAT,
    "responses": Dialect(
        "/v1/responses",
        lambda model, prompt, n: {"model": model, "stream": True, "max_output_tokens": n, "temperature": 0,
                                  "instructions": SYSTEM, "input": prompt, "store": False},
        _responses_tokens,
    ),
    "messages": Dialect(
        "/v1/messages",
        lambda model, prompt, n: {"model": model, "stream": True, "max_tokens": n, "temperature": 0,
                                  "system": SYSTEM, "messages": [{"role": "user", "content": prompt}]},
        _messages_tokens,
    ),
    "ollama": Dialect(
        "/api/chat",
        lambda model, prompt, n: {"model": model, "stream": True, "options": {"num_predict": n, **SAMPLING},
                                  "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]},
        _ollama_tokens,
    ),
}


async def one_stream(client: httpx.AsyncClient, url: str, headers: dict[str, str], dialect: Dialect,
                     model: str, prompt: str, tokens: int) -> int:
    """Generated tokens of one streamed request, as the dialect reports them."""
    count = 0
    body = dialect.body(model, prompt, tokens)
    async with client.stream("POST", url + dialect.path, json=body, headers=headers) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            data = line.removeprefix("data: ")
            if not data.startswith("{"):
                continue
            count = dialect.tokens(json.loads(data)) or count
    return count


async def one_round(url: str, headers: dict[str, str], dialect: Dialect, model: str, streams: int,
                    tokens: int, offset: int) -> float:
    """Aggregate generated tokens/s of `streams` concurrent requests."""
    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=streams)) as client:
        started = time.perf_counter()
        counts = await asyncio.gather(*(
            one_stream(client, url, headers, dialect, model, PROMPT.format(offset + i), tokens) for i in range(streams)
        ))
        return sum(counts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", default="1,4", help="comma-separated concurrent stream counts")
    parser.add_argument("--tokens", type=int, default=128, help="max tokens per stream")
    parser.add_argument("--runs", type=int, default=3, help="rounds per stream count and path")
    parser.add_argument("--dialects", default=",".join(DIALECTS), help="comma-separated dialects to measure")
    args = parser.parse_args()
    chosen = {name: DIALECTS[name] for name in args.dialects.split(",")}
    counts = [int(n) for n in args.streams.split(",")]
    with starter_store() as (store, model), serve(store, parallel=max(counts), keepalive=-1) as bench:
        asyncio.run(one_round(bench.router_url, {}, CHAT, model, 1, 4, 0))  # loads the model
        worker_url, worker_headers = bench.worker(model)
        paths = {f"{name} (router)": (bench.router_url, {}, d) for name, d in chosen.items()}
        paths["chat (worker)"] = (worker_url, worker_headers, CHAT)
        print(f"starter model, max tokens {args.tokens}, median tok/s of {args.runs} rounds; ratio against chat (worker)")
        print("| streams | path | tok/s | ratio |")
        print("|---|---|---|---|")
        for count in counts:
            rates: dict[str, list[float]] = {name: [] for name in paths}
            for run in range(args.runs):
                for side, (name, (url, headers, dialect)) in enumerate(paths.items()):
                    offset = (len(paths) * run + side) * 100
                    rates[name].append(asyncio.run(one_round(url, headers, dialect, model, count, args.tokens, offset)))
            base = statistics.median(rates["chat (worker)"])
            for name, values in rates.items():
                rate = statistics.median(values)
                print(f"| {count} | {name} | {rate:.1f} | {rate / base:.3f} |")


if __name__ == "__main__":
    main()
