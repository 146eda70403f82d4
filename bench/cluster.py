"""The Serve path's cost: `nexa serve --ray` (a local Ray cluster, the model a Serve deployment) against
`nexa serve` on one machine, same starter model and settings, streamed decode tok/s at 1 and 4 streams,
interleaved rounds; then a cold replica's time to first token (the model scaled to zero, the next
request starts a replica: Serve's scale-up, the worker's load, the first token).

    .venv/bin/python bench/cluster.py [--streams 1,4] [--tokens 128] [--runs 3] [--cold 3]

Both servers are `nexa serve` processes, as users run them, with the same --threads and --parallel.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from harness import print_ratio_table, starter_store
from serving import one_round


@contextmanager
def nexa_serve(datadir: Path, port: int, *args: str) -> Iterator[str]:
    env = {**os.environ, "NEXA_DATADIR": str(datadir)}
    process = subprocess.Popen([sys.executable, "-m", "nexa", "serve", "--port", str(port), "--no-ui", *args],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"nexa serve {' '.join(args)} did not start")
            time.sleep(0.5)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(120)


async def first_token(url: str, model: str) -> float:
    """Seconds from sending a streamed chat to its first content chunk."""
    body = {"model": model, "messages": [{"role": "user", "content": "Say hello."}], "stream": True, "max_tokens": 8}
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=300) as client:
        async with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if '"content":"' in line:
                    return time.perf_counter() - started
    raise SystemExit("no token came back")


def replicas(url: str, model: str) -> int:
    running = [m for m in httpx.get(url + "/v1/ps", timeout=30).json()["data"] if m["id"] == model]
    return len(running[0]["replicas"] or []) if running else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", default="1,4", help="comma-separated concurrent stream counts")
    parser.add_argument("--tokens", type=int, default=128, help="max_tokens per stream")
    parser.add_argument("--runs", type=int, default=3, help="rounds per stream count and path")
    parser.add_argument("--cold", type=int, default=3, help="cold starts to time")
    args = parser.parse_args()
    counts = [int(n) for n in args.streams.split(",")]
    common = ["--threads", "2", "--parallel", str(max(counts)), "--keepalive", "6"]
    results: dict[tuple[str, str], list[float]] = {}
    cold: list[float] = []
    with starter_store() as (store, model), \
            nexa_serve(store.root, 18301, *common) as local, \
            nexa_serve(store.root, 18302, *common, "--ray", "--model-option", f"{model}:num_cpus=0") as cluster:
        paths = {"nexa serve": local, "nexa serve --ray": cluster}
        for url in paths.values():
            asyncio.run(first_token(url, model))  # loads the model (and deploys it)
        for count in counts:
            for run in range(args.runs):  # interleaved, so drift in machine load hits both paths alike
                for side, (name, url) in enumerate(paths.items()):
                    offset = (2 * run + side) * 100
                    round_ = asyncio.run(one_round(url, {}, model, count, args.tokens, offset))
                    results.setdefault((f"{count} stream{'s' * (count > 1)}", name), []).append(round_.tokens_per_second)
        for _ in range(args.cold):
            deadline = time.monotonic() + 120
            while replicas(cluster, model) and time.monotonic() < deadline:
                time.sleep(1)
            cold.append(asyncio.run(first_token(cluster, model)))
        warm = [asyncio.run(first_token(cluster, model)) for _ in range(3)]
    print(f"starter model, --threads 2, max_tokens {args.tokens}, median of {args.runs} rounds, decode tok/s")
    rows = [f"{n} stream{'s' * (n > 1)}" for n in counts]
    print_ratio_table("streams", rows, list(paths), results, base="nexa serve")
    print(f"\ncold replica (scaled to zero) time to first token: {', '.join(f'{s:.2f}' for s in cold)} s; "
          f"warm: {', '.join(f'{s:.3f}' for s in warm)} s")


if __name__ == "__main__":
    main()
