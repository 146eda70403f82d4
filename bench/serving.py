"""Serving under concurrency on the starter model: aggregate generated tokens/s at 1, 4 and 8
concurrent streams, time to first token (p50, p95) and inter-token latency (p50, p95), through
the router and straight from its worker.

    .venv/bin/python bench/serving.py [--streams 1,4,8] [--tokens 128] [--runs 3]

The model runs with --parallel equal to the largest stream count, so every stream has a slot.
The router runs in this process (bench/harness.py), so the client and the router share one
interpreter; the worker path has the same client, so the ratio router/worker is the router's
overhead plus that sharing, an upper bound on what a separate `nexa serve` costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field

import httpx

from harness import serve, starter_store

PROMPT = "Write a long story about a lighthouse keeper and the ships she guides, part {}."
# Sent explicitly: the router adds the starter's system prompt when a request has none, the worker would not.
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}


@dataclass
class Stream:
    started: float
    stamps: list[float] = field(default_factory=list)  # arrival of each content chunk
    tokens: int = 0  # from the usage chunk


@dataclass
class Round:
    streams: list[Stream]
    wall: float

    @property
    def tokens_per_second(self) -> float:
        return sum(s.tokens for s in self.streams) / self.wall


async def one_stream(client: httpx.AsyncClient, url: str, headers: dict[str, str], model: str, index: int, tokens: int) -> Stream:
    body = {
        "model": model, "messages": [SYSTEM, {"role": "user", "content": PROMPT.format(index)}], "stream": True,
        "max_tokens": tokens, "temperature": 0, "seed": 1, "stream_options": {"include_usage": True},
    }
    stream = Stream(time.perf_counter())
    async with client.stream("POST", url + "/v1/chat/completions", json=body, headers=headers) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                stream.tokens = chunk["usage"]["completion_tokens"]
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                stream.stamps.append(time.perf_counter())
    return stream


async def one_round(url: str, headers: dict[str, str], model: str, streams: int, tokens: int, offset: int) -> Round:
    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=streams)) as client:
        started = time.perf_counter()
        done = await asyncio.gather(*(one_stream(client, url, headers, model, offset + i, tokens) for i in range(streams)))
        return Round(list(done), time.perf_counter() - started)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


@dataclass
class Result:
    rate: float  # median aggregate tokens/s
    ttft: list[float]
    itl: list[float]

    def row(self) -> list[float]:
        ms = 1000
        return [self.rate, percentile(self.ttft, 0.5) * ms, percentile(self.ttft, 0.95) * ms,
                percentile(self.itl, 0.5) * ms, percentile(self.itl, 0.95) * ms]


def summarise(rounds: list[Round]) -> Result:
    streams = [s for r in rounds for s in r.streams if s.stamps]
    return Result(
        rate=statistics.median(r.tokens_per_second for r in rounds),
        ttft=[s.stamps[0] - s.started for s in streams],
        itl=[b - a for s in streams for a, b in zip(s.stamps, s.stamps[1:])],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", default="1,4,8", help="comma-separated concurrent stream counts")
    parser.add_argument("--tokens", type=int, default=128, help="max_tokens per stream")
    parser.add_argument("--runs", type=int, default=3, help="rounds per stream count and path")
    args = parser.parse_args()
    counts = [int(n) for n in args.streams.split(",")]
    results: dict[tuple[int, str], Result] = {}
    with starter_store() as (store, model), serve(store, parallel=max(counts), keepalive=-1) as bench:
        asyncio.run(one_round(bench.router_url, {}, model, 1, 4, 0))  # loads the model
        paths = {"router": (bench.router_url, {}), "worker": bench.worker(model)}
        for count in counts:
            rounds: dict[str, list[Round]] = {name: [] for name in paths}
            for run in range(args.runs):  # interleaved, so drift in machine load hits both paths alike
                for side, (name, (url, headers)) in enumerate(paths.items()):
                    # Prompts differ per round and path, so neither path meets the other's prompt in the cache.
                    offset = (2 * run + side) * 100
                    rounds[name].append(asyncio.run(one_round(url, headers, model, count, args.tokens, offset)))
            for name in paths:
                results[count, name] = summarise(rounds[name])
    header = ["streams", "path", "tok/s", "TTFT p50 ms", "TTFT p95 ms", "ITL p50 ms", "ITL p95 ms"]
    print(f"starter model, max_tokens {args.tokens}, median of {args.runs} rounds for tok/s")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for count in counts:
        router, worker = results[count, "router"].row(), results[count, "worker"].row()
        for name, row in (("router", router), ("worker", worker)):
            print(f"| {count} | {name} | " + " | ".join(f"{v:.1f}" for v in row) + " |")
        print(f"| {count} | router/worker | " + " | ".join(f"{r / w:.3f}" for r, w in zip(router, worker)) + " |")


if __name__ == "__main__":
    main()
