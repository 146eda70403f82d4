"""The Serve path's cost: `nexa serve --ray` (a local Ray cluster, the model a Serve deployment) against
`nexa serve` on one machine, same starter model and settings, streamed decode tok/s at 1 and 4 streams,
interleaved rounds; then a cold replica's time to first token (the model scaled to zero, the next
request starts a replica: Serve's scale-up, the worker's load, the first token).

    .venv/bin/python bench/cluster.py [--streams 1,4] [--tokens 128] [--runs 3] [--cold 3]

Both servers are `nexa serve` processes, as users run them, with the same --threads and --parallel.

With --agents N, the agent workload instead: N agents at once, each a conversation with a long system
prompt of its own whose every turn re-sends all before it, against one model at replicas=2 under
Serve's own router (router=serve) and under nexa's prefix router, the same model file on the same
cluster in the same run. Per turn: the share of its prompt the engine processed (not found cached) and
the time to first token.

    .venv/bin/python bench/cluster.py --agents 4 [--turns 5] [--system-words 400]
"""

from __future__ import annotations

import argparse
import asyncio
import json
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

from nexa.store import ModelRef, Store
from nexa.store.importer import import_local


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


async def agent(url: str, model: str, name: str, turns: int, words: int) -> list[tuple[float, float]]:
    """One agent's conversation: per turn, (share of the prompt processed, seconds to the first token)."""
    rules = " ".join(f"{name}-rule-{i}" for i in range(words))
    messages = [{"role": "system", "content": f"You are {name}, a coding agent. Follow these rules: {rules}"}]
    measured = []
    async with httpx.AsyncClient(timeout=600) as client:
        for turn in range(turns):
            messages.append({"role": "user", "content": f"Step {turn}: read the next file and say what to change."})
            body = {"model": model, "messages": messages, "stream": True, "max_tokens": 16,
                    "stream_options": {"include_usage": True}}
            started, first, reply, timings, usage = time.perf_counter(), None, [], {}, {}
            async with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
                if response.status_code != 200:
                    raise SystemExit(f"{name}: {(await response.aread()).decode()[:300]}")
                async for line in response.aiter_lines():
                    if not line.startswith("data: {"):
                        continue
                    chunk = json.loads(line[6:])
                    for choice in chunk.get("choices") or []:
                        if (choice.get("delta") or {}).get("content"):
                            first = first or time.perf_counter() - started
                            reply.append(choice["delta"]["content"])
                    timings, usage = chunk.get("timings") or timings, chunk.get("usage") or usage
            processed = timings.get("prompt_n", usage["prompt_tokens"])
            measured.append((processed / usage["prompt_tokens"], first or time.perf_counter() - started))
            messages.append({"role": "assistant", "content": "".join(reply) or "ok"})
    return measured


async def agents_at_once(url: str, model: str, count: int, turns: int, words: int, tag: str) -> list[list[tuple[float, float]]]:
    return await asyncio.gather(*(agent(url, model, f"{tag}{i}", turns, words) for i in range(count)))


def same_file_as(store: Store, model: str, name: str) -> str:
    """`model`'s GGUF file imported again as `name` (no copy): the same model under a second Serve application."""
    manifest, quant = store.resolve(ModelRef.parse(model))
    import_local(store, ModelRef.parse(name), manifest.quants[quant].files[0].location(store.model_dir(manifest.name)))
    return f"{name}:{quant}"


def agent_bench(count: int, turns: int, words: int) -> None:
    with starter_store() as (store, model):
        serve_routed = same_file_as(store, model, "bench/serve-router")
        pair = "replicas=2,num_cpus=0,parallel=2,ctx=8192,threads=1"
        models = {"Serve's router": serve_routed, "nexa prefix router": model}
        with nexa_serve(store.root, 18303, "--ray", "--model-option", f"{serve_routed}:{pair},router=serve",
                        "--model-option", f"{model}:{pair}") as url:
            results, spread = {}, {}
            for label, name in models.items():
                asyncio.run(first_token(url, name))  # deploys it
                results[label] = asyncio.run(agents_at_once(url, name, count, turns, words, label[:4]))
                metrics = httpx.get(url + "/metrics", timeout=60).text.splitlines()
                spread[label] = [line for line in metrics if line.startswith(f'nexa_replica_requests_total{{model="{name}"')]
    print(f"starter model, 2 replicas (parallel 2, 1 thread each), {count} agents at once, {turns} turns, "
          f"system prompt of {words} rules; per turn: share of the prompt processed (not cached), median TTFT")
    print("| turn | " + " | ".join(f"{label}: processed | TTFT" for label in models) + " |")
    print("|---|" + "---|---|" * len(models))
    for turn in range(turns):
        cells = []
        for label in models:
            shares = [conversation[turn][0] for conversation in results[label]]
            ttfts = sorted(conversation[turn][1] for conversation in results[label])
            cells.append(f"{sum(shares) / len(shares):.0%} | {ttfts[len(ttfts) // 2]:.2f} s")
        print(f"| {turn + 1} | " + " | ".join(cells) + " |")
    for label, lines in spread.items():  # how each router spread the turns over the replicas
        print(f"{label}: " + "; ".join(line.split("replica=")[-1] for line in lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", default="1,4", help="comma-separated concurrent stream counts")
    parser.add_argument("--tokens", type=int, default=128, help="max_tokens per stream")
    parser.add_argument("--runs", type=int, default=3, help="rounds per stream count and path")
    parser.add_argument("--cold", type=int, default=3, help="cold starts to time")
    parser.add_argument("--agents", type=int, default=0, help="run the agent workload with this many agents at once")
    parser.add_argument("--turns", type=int, default=5, help="turns per agent")
    parser.add_argument("--system-words", type=int, default=400, help="rules in each agent's system prompt")
    args = parser.parse_args()
    if args.agents:
        agent_bench(args.agents, args.turns, args.system_words)
        return
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
