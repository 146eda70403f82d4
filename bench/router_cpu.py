"""The router's CPU time per streamed token, for each API dialect: what nexa's own process spends to
pass on (chat) or translate (Responses, Messages, Ollama) one generated token.

    .venv/bin/python bench/router_cpu.py [--requests 12] [--tokens 128] [--dialects chat,responses,...]

`nexa serve` runs in its own process (its engine in a worker process of its own), so the router's CPU
time (user + system, from /proc) is the router's alone. Streams run one at a time; each dialect's
generated tokens are those it reports. On a 2-core machine every router millisecond comes out of the
engine's, which is why this number matters more than the wall-clock ratios of bench/dialects.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

import httpx

from dialects import CHAT, DIALECTS, one_stream
from harness import nexa_serve, starter_store

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (all its threads, not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


async def streamed(url: str, dialect_name: str, model: str, requests: int, tokens: int) -> int:
    async with httpx.AsyncClient(timeout=300) as client:
        total = 0
        for i in range(requests):
            total += await one_stream(client, url, {}, DIALECTS[dialect_name], model,
                                      f"Write a long story about a lighthouse, part {i}.", tokens)
        return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=12, help="streamed requests per dialect")
    parser.add_argument("--tokens", type=int, default=128, help="max tokens per request")
    parser.add_argument("--dialects", default=",".join(DIALECTS), help="comma-separated dialects to measure")
    args = parser.parse_args()
    with starter_store() as (store, model), nexa_serve(store, "--keepalive", "-1") as served:
        asyncio.run(one_stream(httpx.AsyncClient(timeout=300), served.url, {}, CHAT, model, "hi", 4))  # loads it
        print(f"starter model, {args.requests} streams of up to {args.tokens} tokens each, one at a time")
        print("| dialect | tokens | router CPU s | router CPU ms/token |")
        print("|---|---|---|---|")
        for name in args.dialects.split(","):
            before = cpu_seconds(served.pid)
            tokens = asyncio.run(streamed(served.url, name, model, args.requests, args.tokens))
            spent = cpu_seconds(served.pid) - before
            print(f"| {name} | {tokens} | {spent:.2f} | {1000 * spent / max(tokens, 1):.3f} |")


if __name__ == "__main__":
    main()
