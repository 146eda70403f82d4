"""Soak: a `nexa serve` under mixed traffic for a long while, with clients that give up, workers
killed with SIGKILL, and more models than places (model churn). Prints, every --every seconds and
at the end: requests, client errors (4xx), 5xx by kind, lost requests (no answer at all, or a
stream cut with no error event), loads, the router's RSS, and at the end any slot left busy.

    .venv/bin/python bench/soak.py [--minutes 30] [--clients 16] [--kill-every 180] [--every 30]

Tiny generated models (a chat model, an embedder, a reranker and a chat model that never stops)
in three places for four models, so the queue for room is always in use.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness import nexa_serve  # noqa: E402
from nexa.store import ModelRef, Store  # noqa: E402
from nexa.store.importer import import_local  # noqa: E402
from tests.fixtures.tiny_models import make_bert, make_chat_llm  # noqa: E402

HI = [{"role": "user", "content": "hi"}]
CHAT, LOOP, EMBED, RERANK = "soak/chat", "soak/loop", "soak/embed", "soak/rerank"
REQUESTS = [  # (weight, path, body, streamed)
    (3, "/v1/chat/completions", {"model": CHAT, "messages": HI, "max_tokens": 16}, False),
    (3, "/v1/chat/completions", {"model": LOOP, "messages": HI, "max_tokens": 64, "stream": True}, True),
    (2, "/v1/embeddings", {"model": EMBED, "input": [f"text {i}" for i in range(32)]}, False),
    (2, "/v1/rerank", {"model": RERANK, "query": "q", "documents": ["a", "b", "c"]}, False),
    (1, "/v1/chat/completions", {"model": CHAT, "messages": "not a list"}, False),  # a 400, on purpose
]


def make_store(folder: Path) -> Store:
    store = Store(folder / "data")
    for name, make in ((CHAT, lambda p: make_chat_llm(p, script=["Hello", " there"])),
                       (LOOP, lambda p: make_chat_llm(p, script=["Tick", " tock"], loop=True)),
                       (EMBED, make_bert), (RERANK, lambda p: make_bert(p, rerank=True))):
        model_dir = folder / name.replace("/", "_")
        model_dir.mkdir()
        make(str(model_dir / "model.gguf"))
        import_local(store, ModelRef.parse(name), model_dir, None)
    return store


def rss_mib(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20


class Tally:
    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()

    def __str__(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))


async def one(client: httpx.AsyncClient, rng: random.Random, tally: Tally) -> None:
    _, path, body, streamed = rng.choices(REQUESTS, weights=[r[0] for r in REQUESTS])[0]
    try:
        if not streamed:
            answer = await client.post(path, json=body)
            kind = "ok" if answer.status_code == 200 else f"{answer.status_code // 100}xx"
            if answer.status_code >= 500:
                kind += " " + answer.json()["error"].get("code", "?")
            tally.outcomes[kind] += 1
            return
        give_up = rng.random() < 0.3  # a client that leaves mid-stream
        async with client.stream("POST", path, json=body) as answer:
            if answer.status_code != 200:
                await answer.aread()
                tally.outcomes[f"{answer.status_code // 100}xx"] += 1
                return
            events = 0
            async for line in answer.aiter_lines():
                if line == "data: [DONE]":
                    tally.outcomes["ok"] += 1
                    return
                if line.startswith('data: {"error"'):
                    tally.outcomes["stream error event"] += 1
                    return
                events += line.startswith("data:")
                if give_up and events > 5:
                    tally.outcomes["client left"] += 1
                    return
            tally.outcomes["LOST (stream cut without an error)"] += 1
    except httpx.TransportError as exc:
        tally.outcomes[f"LOST ({exc.__class__.__name__})"] += 1


async def client_loop(url: str, seed: int, stop: float, tally: Tally) -> None:
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(300, connect=10)) as client:
        while time.monotonic() < stop:
            await one(client, rng, tally)


async def killer(url: str, every: float, stop: float, kills: list[int]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        while time.monotonic() + every < stop:
            await asyncio.sleep(every)
            loaded = (await client.get("/v1/ps")).json()["data"]
            if loaded:
                os.kill(random.choice(loaded)["pid"], signal.SIGKILL)
                kills.append(1)


async def soak(url: str, router_pid: int, args: argparse.Namespace) -> None:
    start = time.monotonic()
    stop = start + args.minutes * 60
    tally, kills = Tally(), []
    tasks = [asyncio.create_task(client_loop(url, seed, stop, tally)) for seed in range(args.clients)]
    tasks.append(asyncio.create_task(killer(url, args.kill_every, stop, kills)))
    print(f"{'min':>5} {'rss MiB':>8} {'kills':>5}  outcomes")
    while not all(t.done() for t in tasks):
        await asyncio.wait(tasks, timeout=args.every)
        print(f"{(time.monotonic() - start) / 60:5.1f} {rss_mib(router_pid):8d} {len(kills):5d}  {tally}", flush=True)
    for task in tasks:
        task.result()
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        await asyncio.sleep(3)
        busy = {m["id"]: (m["slots_busy"], m["in_flight"]) for m in (await client.get("/v1/ps")).json()["data"]}
        metrics = (await client.get("/metrics")).text
    loads = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith("nexa_model_loads_total"))
    leaks = {k: v for k, v in busy.items() if v != (0, 0)}
    print(f"\nrequests {sum(tally.outcomes.values())}: {tally}")
    print(f"worker kills {len(kills)}, model loads {loads:.0f}, router RSS {rss_mib(router_pid)} MiB, "
          f"slots still busy: {leaks or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--kill-every", type=float, default=180, help="seconds between SIGKILLs of a random worker")
    parser.add_argument("--every", type=float, default=30, help="seconds between progress lines")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(Path(tmp))
        flags = ["--threads", "1", "--parallel", "2", "--ctx", "1024", "--max-loaded-models", "3",
                 "--model-option", f"{LOOP}:ctx=4096", "--log-level", "warning"]
        with nexa_serve(store, *flags, quiet=False) as router:
            asyncio.run(soak(router.url, router.pid, args))


if __name__ == "__main__":
    main()
