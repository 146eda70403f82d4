"""Speech to text: audio seconds transcribed per wall second, through nexa and straight from the engine.

    .venv/bin/python bench/transcribe.py [--concurrency 1,4] [--clips 20,120] [--runs 3]

A tiny scripted text model with the qwen2a audio projector (the test suite's generator), served by
`nexa serve` in its own process and by the same engine started alone with the same settings, answering
the same WAV clips on `POST /v1/audio/transcriptions`: nexa decodes, cuts the clip into pieces of under
30 s and sends each through its chat path; the engine takes the whole clip in one prompt (so its slots
get a context large enough for the longest clip). Rounds alternate between the two; the table shows
medians and the ratio nexa/engine (target >= 0.97).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness import bare_engine, engine_spec, nexa_serve  # noqa: E402
from nexa.store import ModelRef, Store  # noqa: E402
from nexa.store.importer import import_local  # noqa: E402
from tests.fixtures.media_samples import wav_bytes  # noqa: E402
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


async def one_round(url: str, headers: dict[str, str], clip: bytes, seconds: float, concurrency: int) -> float:
    """Audio seconds per wall second of `concurrency` clips transcribed at once."""
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=concurrency)) as client:

        async def one() -> None:
            response = await client.post(url + "/v1/audio/transcriptions", headers=headers,
                                         files={"file": ("clip.wav", clip, "audio/wav")}, data={"model": MODEL})
            response.raise_for_status()
            assert response.json()["text"].startswith("The quick brown fox"), response.text

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(concurrency)))
        return concurrency * seconds / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", default="1,4", help="comma-separated concurrent request counts")
    parser.add_argument("--clips", default="20,120", help="comma-separated clip lengths in seconds")
    parser.add_argument("--runs", type=int, default=3, help="rounds per clip, concurrency and path")
    parser.add_argument("--threads", type=int, default=2, help="engine threads")
    args = parser.parse_args()
    counts = [int(n) for n in args.concurrency.split(",")]
    clips = {float(s): wav_bytes(float(s)) for s in args.clips.split(",")}
    # The engine gets the whole clip in one prompt: ~750 tokens for each started 30 s window, plus one.
    ctx = 1024 * (int(max(clips) // 30) + 2)
    settings = dict(parallel=max(counts), ctx=ctx, threads=args.threads, keepalive=-1)
    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(Path(tmp))
        flags = [f"--{k}={v}" for k, v in settings.items()]
        with bare_engine(engine_spec(store, MODEL, **settings)) as engine, nexa_serve(store, *flags) as nexa:
            paths = {"engine": engine, "nexa": (nexa.url, {})}
            for url, headers in paths.values():  # loads nexa's model; warms both
                asyncio.run(one_round(url, headers, clips[min(clips)], min(clips), 1))
            print(f"scripted tiny audio model (qwen2a), {args.threads} threads, {max(counts)} slots of {ctx} tokens; "
                  f"median audio s per wall s of {args.runs} rounds")
            print("| clip s | concurrent | engine | nexa | nexa/engine |")
            print("|---|---|---|---|---|")
            for seconds, clip in clips.items():
                for count in counts:
                    rates: dict[str, list[float]] = {name: [] for name in paths}
                    for _ in range(args.runs):
                        for name, (url, headers) in paths.items():
                            rates[name].append(asyncio.run(one_round(url, headers, clip, seconds, count)))
                    engine_rate, nexa_rate = statistics.median(rates["engine"]), statistics.median(rates["nexa"])
                    print(f"| {seconds:g} | {count} | {engine_rate:.1f} | {nexa_rate:.1f} | {nexa_rate / engine_rate:.3f} |",
                          flush=True)


if __name__ == "__main__":
    main()
