"""Native llama-server against the xllamacpp wheel, bare and behind nexa's router, side by side.

    .venv/bin/python bench/runtimes.py [--native PATH] [--runs 3] [--tokens 96] [--threads 2]

Four paths serve the same starter model file with the same settings (4 slots, `--threads` threads, 8,192
context tokens shared by the slots): the bare llama-server (the binary started alone, with nexa's flags), `nexa serve
--runtime` that binary, the bare xllamacpp engine (nexa's worker process, no router), and `nexa serve
--runtime xllamacpp` (nexa's default before a native build). Each nexa server is its own process, as a user
runs it. Figures: decode tok/s of 1 stream and of 4 and 8 concurrent streams (aggregate; 8 streams on
4 slots queue in the engine), and prefill tok/s of a ~1,000-token prompt (unique per request, so no prompt
cache helps). Rounds are interleaved, so drift in machine load hits every path alike; ratios against the
bare llama-server are what count, not the absolute numbers. The native runtime is `--native`, else the best
one `nexa runtime build` installed (data dir or test cache).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from functools import partial
from itertools import count
from pathlib import Path

import httpx

from harness import bare_engine, engine_spec, nexa_serve, print_ratio_table, starter_store
from nexa.config import default_datadir
from nexa.runtime.runtimes import XLLAMACPP, describe, installed

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
STORY = "Write a long story about a lighthouse keeper and the ships she guides, part {}."
# About 1,000 tokens of prose for the prefill figure.
LONG = " ".join(f"Ship {i} passed the lighthouse at dawn, its sails grey against the rising light." for i in range(60))
_nonce = count()


def chat(url: str, headers: dict[str, str], model: str, content: str, max_tokens: int, stream: bool):
    body = {"model": model, "messages": [SYSTEM, {"role": "user", "content": content}], "max_tokens": max_tokens,
            "temperature": 0, "seed": 1, "stream": stream}
    return httpx.stream("POST", url + "/v1/chat/completions", json=body, headers=headers, timeout=300)


def stream_stamps(url: str, headers: dict[str, str], model: str, tokens: int) -> list[float]:
    """Arrival time of each streamed content token."""
    stamps = []
    with chat(url, headers, model, STORY.format(next(_nonce)), tokens, True) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                choices = json.loads(line[6:])["choices"]
                if choices and choices[0]["delta"].get("content"):
                    stamps.append(time.perf_counter())
    return stamps


def decode(url: str, headers: dict[str, str], model: str, tokens: int, streams: int) -> float:
    """Aggregate tokens/s over all streams, from the first token of any stream to the last (prompt excluded)."""
    with ThreadPoolExecutor(streams) as pool:
        runs = list(pool.map(lambda _: stream_stamps(url, headers, model, tokens), range(streams)))
    stamps = sorted(s for run in runs for s in run)
    return (len(stamps) - streams) / (stamps[-1] - stamps[0])


def prefill(url: str, headers: dict[str, str], model: str) -> float:
    """Prompt tokens per second of a long prompt, generating one token; the nonce in front defeats the cache."""
    started = time.perf_counter()
    with chat(url, headers, model, f"[{next(_nonce)}] {LONG}", 1, False) as response:
        usage = json.loads(response.read())["usage"]
    return usage["prompt_tokens"] / (time.perf_counter() - started)


def native_runtime(given: str | None) -> str:
    if given:
        return str(Path(given).resolve())
    for datadir in (default_datadir(), Path.home() / ".cache" / "nexa-test" / "native"):
        runnable = [r for r in installed(datadir) if r.runs_here()]
        if runnable:
            return str(runnable[0].binary)
    raise SystemExit("no native runtime: run `nexa runtime build` first, or pass --native PATH")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--native", help="llama-server binary (default: the best installed runtime)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    native = native_runtime(args.native)
    figures: dict[str, Callable[[str, dict[str, str], str], float]] = {
        f"decode {n} stream{'s' * (n > 1)}, tok/s": partial(decode, tokens=args.tokens, streams=n) for n in (1, 4, 8)
    }
    figures["prefill, tok/s"] = prefill
    settings = {"parallel": 4, "ctx": 8192, "threads": args.threads}
    with starter_store() as (store, model), ExitStack() as stack:
        paths = {}
        for runtime, label in ((native, "native"), (XLLAMACPP, "xllamacpp")):
            spec = engine_spec(store, model, runtime=runtime, **settings)
            paths[f"bare {label}"] = stack.enter_context(bare_engine(spec))
            flags = [f"--{key}={value}" for key, value in settings.items()]
            router = stack.enter_context(nexa_serve(store, "--runtime", runtime, *flags)).url
            decode(router, {}, model, 4, 1)  # loads the model
            paths[f"nexa on {label}"] = (router, {})
        results: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.runs):
            for figure, measure in figures.items():
                for path, (url, headers) in paths.items():
                    results.setdefault((figure, path), []).append(measure(url, headers, model))
    print(f"native: {describe(native)}\nmodel: {model}, 4 slots, {args.threads} threads, "
          f"median of {args.runs} interleaved runs\n")
    print_ratio_table("figure", list(figures), list(paths), results, base="bare native")


if __name__ == "__main__":
    main()
