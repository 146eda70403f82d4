"""Speculative decoding with llama.cpp's n-gram drafts: decode speed with and without, on a task that repeats
its prompt (rewriting code) and one that does not (a story), same model file, same settings.

    .venv/bin/python bench/speculative.py [--runtime xllamacpp|PATH] [--runs 3] [--tokens 200] [--threads 2]

Each draft mode serves the starter model in its own router (`--model-option NAME:draft=MODE`), one slot each;
requests are greedy and interleaved across the routers. The ratio against no drafting is what counts.
"""

from __future__ import annotations

import argparse
import time
from contextlib import ExitStack

import httpx

from harness import print_ratio_table, serve, starter_store

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
CODE = "\n".join(
    f"def total_{i}(items):\n    result = 0\n    for item in items:\n        result += item.price * item.count\n"
    f"    return result\n" for i in range(8)
)
TASKS = {
    "rewrite code": f"Rewrite this code, renaming `result` to `acc`. Reply with the code only.\n\n{CODE}",
    "write a story": "Write a long story about a lighthouse keeper and the ships she guides.",
}
MODES = ("none", "ngram-mod", "ngram-simple")


def tokens_per_second(url: str, model: str, prompt: str, tokens: int) -> float:
    """Generated tokens over the whole request time, prompt included, as a user waits for it."""
    body = {"model": model, "messages": [SYSTEM, {"role": "user", "content": prompt}], "max_tokens": tokens,
            "temperature": 0, "seed": 1}
    started = time.perf_counter()
    response = httpx.post(url + "/v1/chat/completions", json=body, timeout=600)
    return response.json()["usage"]["completion_tokens"] / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime", default="xllamacpp")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with starter_store() as (store, model), ExitStack() as stack:
        name = model.rpartition(":")[0]
        urls = {}
        for mode in MODES:
            options = {} if mode == "none" else {"model_options": [f"{name}:draft={mode}"]}
            bench = stack.enter_context(serve(store, runtime=args.runtime, parallel=1, ctx=4096,
                                              threads=args.threads, **options))
            tokens_per_second(bench.router_url, model, "hi", 4)  # loads the model
            urls[mode] = bench.router_url
        results: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.runs):
            for task, prompt in TASKS.items():
                for mode, url in urls.items():
                    results.setdefault((task, mode), []).append(tokens_per_second(url, model, prompt, args.tokens))
    print(f"model: {model}, runtime {args.runtime}, 1 slot, {args.threads} threads, median of {args.runs} runs, "
          "tok/s over the whole request\n")
    print_ratio_table("task", list(TASKS), list(MODES), results, base="none")


if __name__ == "__main__":
    main()
