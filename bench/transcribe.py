"""Speech to text: audio seconds transcribed per wall second, through nexa and straight from the engine.

    .venv/bin/python bench/transcribe.py [--concurrency 1,4] [--clips 20,120] [--runs 30] [--round 4]

A tiny scripted text model with the qwen2a audio projector (the test suite's generator), served by
`nexa serve` in its own process and by the same engine started alone with the same settings, answering
new noise clips (WAV) on `POST /v1/audio/transcriptions`: nexa decodes, cuts each into pieces of under
30 s and sends them to the engine's same route, as many a request as a slot's share of the context holds;
the engine alone takes the whole clip in one prompt. The slots share one KV cache, sized so that every slot
holds the longest clip at once (as the engine's route needs at full concurrency). A round is `--round` clips
at least, `concurrency` at a time, each client sending its share one after another (as a client keeps its
connection); at 1 at a time, a round of one clip varied by ~9 % from round to round with no code change.
Rounds alternate between the two, and which goes first; the table shows each one's median rate, the
median of the rounds' ratios nexa/engine (target >= 0.97) with the 90 % interval of that median (bootstrap:
on a noisy host one cell's median moves by a few percent from run to run), and the load average before and
after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness import bare_engine, engine_spec, nexa_serve  # noqa: E402
from nexa.media.audio import RATE, wav  # noqa: E402
from nexa.store import ModelRef, Store  # noqa: E402
from nexa.store.importer import import_local  # noqa: E402
from tests.fixtures.tiny_models import make_chat_llm, make_mmproj  # noqa: E402

MODEL = "bench/audio"
SCRIPT = ["The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog."]


def make_store(folder: Path) -> Store:
    model_dir = folder / "audio"
    model_dir.mkdir()
    make_chat_llm(str(model_dir / "model.gguf"), script=SCRIPT, n_ctx=32768)
    make_mmproj(str(model_dir / "mmproj-qwen2a.gguf"), n_embd_text=128, kind="qwen2a")
    store = Store(folder / "data")
    import_local(store, ModelRef.parse(MODEL), model_dir, None)
    return store


def fresh_clip(seconds: float, rng: np.random.Generator) -> bytes:
    """Noise no request sent before: the engine's prompt cache answers a repeated clip (the same audio is the
    same prompt) from memory, skipping the encoding this bench measures. Silence would also make a long
    clip's pieces alike, which the cache would share between them."""
    return wav((rng.standard_normal(int(seconds * RATE)) * 1000).astype(np.int16))


async def one_round(url: str, headers: dict[str, str], seconds: float, concurrency: int, rng: np.random.Generator,
                    clips: int = 1) -> float:
    """Audio seconds per wall second of `clips` clips (at least) transcribed `concurrency` at a time."""
    each = -(-clips // concurrency)  # clips a client sends, one after another
    shares = [[fresh_clip(seconds, rng) for _ in range(each)] for _ in range(concurrency)]

    async def one(share: list[bytes]) -> None:
        async with httpx.AsyncClient(timeout=600) as client:  # each its own connection, kept for its share
            for clip in share:
                response = await client.post(url + "/v1/audio/transcriptions", headers=headers,
                                             files={"file": ("clip.wav", clip, "audio/wav")}, data={"model": MODEL})
                response.raise_for_status()
                assert response.json()["text"].startswith("The quick brown fox"), response.text

    started = time.perf_counter()
    await asyncio.gather(*(one(share) for share in shares))
    return concurrency * each * seconds / (time.perf_counter() - started)


def interval(ratios: list[float], draws: int = 2000) -> tuple[float, float]:
    """The 90 % bootstrap interval of the ratios' median: how far another run's figure may fall."""
    pick = random.Random(0)
    medians = sorted(statistics.median(pick.choices(ratios, k=len(ratios))) for _ in range(draws))
    return medians[draws // 20], medians[draws - 1 - draws // 20]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", default="1,4", help="comma-separated concurrent request counts")
    parser.add_argument("--clips", default="20,120", help="comma-separated clip lengths in seconds")
    parser.add_argument("--runs", type=int, default=30, help="rounds per clip, concurrency and path")
    parser.add_argument("--threads", type=int, default=2, help="engine threads")
    parser.add_argument("--round", type=int, default=4, help="clips a round transcribes at least")
    args = parser.parse_args()
    counts = [int(n) for n in args.concurrency.split(",")]
    clips = [float(s) for s in args.clips.split(",")]
    rng = np.random.default_rng(0)
    # The engine gets the whole clip in one prompt: ~750 tokens for each started 30 s window (a clip of
    # exactly 30 s starts two), plus one; every slot at once, in the one KV cache they share.
    per_slot = 1024 * (int(max(clips) // 30) + 2)
    settings = dict(parallel=max(counts), ctx=per_slot * max(counts), threads=args.threads, keepalive=-1)
    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(Path(tmp))
        flags = [f"--{k}={v}" for k, v in settings.items()]
        with bare_engine(engine_spec(store, MODEL, **settings)) as engine, nexa_serve(store, *flags) as nexa:
            paths = {"engine": engine, "nexa": (nexa.url, {})}
            for url, headers in paths.values():  # loads nexa's model; warms both
                asyncio.run(one_round(url, headers, min(clips), 1, rng))
            print(f"scripted tiny audio model (qwen2a), {args.threads} threads, {max(counts)} slots sharing "
                  f"{settings['ctx']} tokens; median audio s per wall s of {args.runs} rounds; "
                  f"load average {os.getloadavg()[0]:.2f}")
            print("| clip s | concurrent | engine | nexa | nexa/engine (median of rounds) | 90 % interval |")
            print("|---|---|---|---|---|---|")
            for seconds in clips:
                for count in counts:
                    rates: dict[str, list[float]] = {name: [] for name in paths}
                    for run in range(args.runs):  # each round's pair in turn first: neither gains from going first
                        for name in sorted(paths, reverse=bool(run % 2)):
                            url, headers = paths[name]
                            rates[name].append(asyncio.run(one_round(url, headers, seconds, count, rng, args.round)))
                    # The median of each round's own ratio: the host's speed drifts between rounds, and a pair
                    # measured back to back shares its speed.
                    ratios = [n / e for n, e in zip(rates["nexa"], rates["engine"])]
                    low, high = interval(ratios)
                    engine_rate, nexa_rate = statistics.median(rates["engine"]), statistics.median(rates["nexa"])
                    print(f"| {seconds:g} | {count} | {engine_rate:.1f} | {nexa_rate:.1f} "
                          f"| {statistics.median(ratios):.3f} | {low:.3f}-{high:.3f} |", flush=True)
            print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
