"""Single-stream decode speed of the starter model, through the router and straight from its worker.

    .venv/bin/python bench/decode.py [--runs 5] [--tokens 128]

The ratio router/worker is the figure that counts: it is the router's overhead.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import httpx

from harness import serve, starter_store

PROMPT = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]


def decode_rate(url: str, headers: dict[str, str], model: str, tokens: int) -> float:
    """Tokens per second between the first and the last streamed token (prompt time excluded)."""
    body = {"model": model, "messages": PROMPT, "stream": True, "max_tokens": tokens, "temperature": 0, "seed": 1}
    stamps = []
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, headers=headers, timeout=120) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                delta = json.loads(line[6:])["choices"]
                if delta and delta[0]["delta"].get("content"):
                    stamps.append(time.perf_counter())
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    with starter_store() as (store, model), serve(store, parallel=1) as bench:
        decode_rate(bench.router_url, {}, model, 8)  # loads the model
        worker_url, worker_headers = bench.worker(model)
        router, worker = [], []
        for _ in range(args.runs):  # interleaved, so drift in machine load hits both alike
            router.append(decode_rate(bench.router_url, {}, model, args.tokens))
            worker.append(decode_rate(worker_url, worker_headers, model, args.tokens))
    r, w = statistics.median(router), statistics.median(worker)
    print(f"{'path':<8} {'decode tok/s (median of ' + str(args.runs) + ')':>32}")
    print(f"{'router':<8} {r:>32.1f}")
    print(f"{'worker':<8} {w:>32.1f}")
    print(f"router/worker ratio: {r / w:.3f}")


if __name__ == "__main__":
    main()
