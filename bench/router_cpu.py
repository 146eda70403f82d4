"""The router's CPU time per streamed token, for each API dialect: what nexa's own process spends to
pass on (chat) or translate (Responses, Messages, Ollama) one generated token.

    .venv/bin/python bench/router_cpu.py [--requests 12] [--tokens 128] [--dialects chat,responses,...]

`nexa serve` runs in its own process (its engine in a worker process of its own), so the router's CPU
time (user + system, from /proc) is the router's alone. Streams run one at a time; each dialect's
generated tokens are those it reports. What the idle router spends meanwhile (its timers, measured
over `--idle` seconds first) is taken off, so a slow or busy machine does not inflate the figure. On a 2-core machine every router millisecond comes out of the
engine's, which is why this number matters more than the wall-clock ratios of bench/dialects.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
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
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle router CPU to measure first")
    args = parser.parse_args()
    with starter_store() as (store, model), nexa_serve(store, "--keepalive", "-1") as served:
        asyncio.run(one_stream(httpx.AsyncClient(timeout=300), served.url, {}, CHAT, model, "hi", 4))  # loads it
        before = cpu_seconds(served.pid)
        time.sleep(args.idle)
        idle = (cpu_seconds(served.pid) - before) / args.idle
        print(f"starter model, {args.requests} streams of up to {args.tokens} tokens each, one at a time; "
              f"idle router CPU {1000 * idle:.1f} ms/s taken off")
        print("| dialect | tokens | tok/s | router CPU s | router CPU ms/token |")
        print("|---|---|---|---|---|", flush=True)
        for name in args.dialects.split(","):
            before, started = cpu_seconds(served.pid), time.monotonic()
            tokens = asyncio.run(streamed(served.url, name, model, args.requests, args.tokens))
            took = time.monotonic() - started
            spent = cpu_seconds(served.pid) - before - idle * took
            print(f"| {name} | {tokens} | {tokens / took:.1f} | {spent:.2f} | {1000 * spent / max(tokens, 1):.3f} |",
                  flush=True)


if __name__ == "__main__":
    main()
