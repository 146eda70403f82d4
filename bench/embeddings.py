"""Embedding throughput of all-MiniLM-L6-v2: texts per second for one request of 256 short
sentences, through the router and straight from its worker.

    .venv/bin/python bench/embeddings.py [--runs 5] [--texts 256] [--threads N]

The ratio router/worker is the figure that counts: it is the router's overhead (validation,
batching, merging the answers). `base64` is what the openai client asks for by default.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from harness import serve

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for the test suite's MiniLM fixture
from nexa.store import Store  # noqa: E402
from tests.conftest import cache_dir  # noqa: E402
from tests.fixtures.minilm import import_minilm  # noqa: E402

SUBJECTS = ["The cat", "A child", "My neighbour", "The old man", "Our team", "The river", "A bird", "The train"]
VERBS = ["sleeps", "runs", "waits", "sings", "rests", "moves", "shines", "turns"]
PLACES = ["by the window", "in the park", "near the station", "under the bridge"]


def sentences(count: int) -> list[str]:
    """Distinct short sentences (about ten tokens each)."""
    return [f"{SUBJECTS[i % 8]} {VERBS[(i // 8) % 8]} {PLACES[(i // 64) % 4]}, day {i}." for i in range(count)]


def rate(url: str, headers: dict[str, str], model: str, texts: list[str], encoding: str) -> float:
    started = time.perf_counter()
    response = httpx.post(url + "/v1/embeddings", json={"model": model, "input": texts, "encoding_format": encoding},
                          headers=headers, timeout=300)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    assert len(response.json()["data"]) == len(texts)
    return len(texts) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--threads", type=int, help="CPU threads for the model (default: the server's, every core)")
    args = parser.parse_args()
    texts = sentences(args.texts)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp))
        name = import_minilm(store, cache_dir())
        model = f"{name}:{next(iter(store.get(name).quants))}"
        with serve(store, **({"threads": args.threads} if args.threads else {})) as bench:
            rate(bench.router_url, {}, model, texts[:8], "float")  # loads the model
            worker_url, worker_headers = bench.worker(model)
            results: dict[tuple[str, str], list[float]] = {}
            for _ in range(args.runs):  # interleaved, so drift in machine load hits every path alike
                for encoding in ("float", "base64"):
                    for path, url, headers in (("router", bench.router_url, {}), ("worker", worker_url, worker_headers)):
                        results.setdefault((path, encoding), []).append(rate(url, headers, model, texts, encoding))
    print(f"{args.texts} sentences per request, median of {args.runs} runs")
    print(f"{'path':<8} {'encoding':<9} {'texts/s':>9}")
    medians = {key: statistics.median(values) for key, values in results.items()}
    for (path, encoding), value in medians.items():
        print(f"{path:<8} {encoding:<9} {value:>9.1f}")
    for encoding in ("float", "base64"):
        print(f"router/worker ratio ({encoding}): {medians['router', encoding] / medians['worker', encoding]:.3f}")


if __name__ == "__main__":
    main()
