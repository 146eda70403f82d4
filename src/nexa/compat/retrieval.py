"""Embedding and rerank requests as the engine wants them, and its answers as clients want them.

Pure functions: no I/O, so every rule here is unit-tested directly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, TypeVar

from nexa.errors import InvalidRequest

# Inputs per request to the worker: large requests are split and their batches sent together.
BATCH = 64
# Per request, as OpenAI (2,048 inputs, 300,000 tokens) and Cohere (1,000 documents) cap theirs: what one
# request costs the router (its body, the vectors it holds and sends back) stays bounded.
MAX_INPUTS = 2048
MAX_DOCUMENTS = 1000
MAX_TOTAL_TOKENS = 300_000
# Most tokens a tokenizer adds around a text (CLS/SEP, BOS/EOS, a leading-space piece). Every
# token covers at least one UTF-8 byte, so a text of n bytes has at most n + MARGIN tokens.
MARGIN = 8

EngineInput = str | list[int]
NormalizeMethod = Literal["softmax", "linear", "none"]
T = TypeVar("T")


def embedding_inputs(value: str | list[str] | list[int] | list[list[int]]) -> list[EngineInput]:
    """The request's `input` as a list of texts and token arrays; an empty one is refused by its index."""
    if isinstance(value, str):
        inputs: list[EngineInput] = [value]
    elif value and all(isinstance(v, int) for v in value):
        inputs = [list(value)]  # one token array
    else:
        inputs = list(value)  # type: ignore[arg-type]
    if not inputs:
        raise InvalidRequest("'input' is an empty list; send at least one text", param="input", code="empty_input")
    check_count("input", len(inputs), MAX_INPUTS)
    for index, item in enumerate(inputs):
        if not item:
            raise InvalidRequest(f"input[{index}] is empty; every input needs some text or tokens",
                                 param="input", code="empty_input")
    return inputs


def check_count(field: str, count: int, limit: int) -> None:
    if count > limit:
        raise InvalidRequest(f"'{field}' has {count} items, over the limit of {limit} per request; "
                             "send them in several requests", param=field, code="too_many_inputs")


def check_total_tokens(counts: Sequence[int]) -> None:
    """Refuse a request whose inputs together have more than MAX_TOTAL_TOKENS tokens."""
    total = sum(counts)
    if total > MAX_TOTAL_TOKENS:
        raise InvalidRequest(f"the inputs have {total} tokens together, over the limit of {MAX_TOTAL_TOKENS} per "
                             "request; send them in several requests", param="input", code="too_many_tokens")


def token_bound(item: EngineInput) -> int:
    """Most tokens an input can have: exact for token arrays, bytes + MARGIN for texts."""
    return len(item) if isinstance(item, list) else len(item.encode()) + MARGIN


def may_exceed(limit: int, *texts: str) -> bool:
    """Whether `texts` together could have more than `limit` tokens; only such texts need counting."""
    return sum(len(text.encode()) + MARGIN for text in texts) > limit


def check_token_ids(index: int, tokens: list[int], vocab: int) -> None:
    bad = next((t for t in tokens if not 0 <= t < vocab), None)
    if bad is not None:
        raise InvalidRequest(f"input[{index}] holds token id {bad}, outside the model's vocabulary (0..{vocab - 1})",
                             param="input", code="invalid_token")


def fit(index: int, count: int, limit: int, truncate: bool) -> None:
    """Refuse an input of `count` tokens that does not fit `limit`, unless it will be truncated."""
    if count > limit and not truncate:
        raise InvalidRequest(
            f"input[{index}] has {count} tokens but the model takes at most {limit}; shorten it, "
            "send truncate: true to cut it, or start nexa serve with a larger --ctx",
            param="input", code="input_too_long",
        )


def truncated(full: list[int], plain: list[int], limit: int) -> list[int]:
    """Cut a text's tokens to `limit`, keeping the special tokens around it.

    `full` is the tokenization with special tokens, `plain` without; the specials are
    what `full` has before and after `plain`.
    """
    extra = len(full) - len(plain)
    head = next((i for i in range(extra + 1) if full[i:i + len(plain)] == plain), extra)
    return full[:head] + plain[: max(limit - extra, 0)] + full[head + len(plain):]


def batches(items: Sequence[T], size: int = BATCH) -> list[tuple[int, list[T]]]:
    """(offset, items) slices of at most `size` items, in order."""
    return [(start, list(items[start:start + size])) for start in range(0, len(items), size)]


def normalize_method(normalize: bool | None, method: NormalizeMethod | None) -> NormalizeMethod:
    """Nexa's two fields as one choice: an explicit method wins unless normalize is false."""
    if normalize is False:
        return "none"
    return method or ("softmax" if normalize else "none")


def normalized(scores: list[float], method: NormalizeMethod) -> list[float]:
    if method == "softmax":
        top = max(scores)
        exps = [math.exp(s - top) for s in scores]
        total = sum(exps)
        return [e / total for e in exps]
    if method == "linear":
        low, high = min(scores), max(scores)
        return [(s - low) / (high - low) if high > low else 1.0 for s in scores]
    return list(scores)


def ranking(scores: list[float], top_n: int | None) -> list[int]:
    """Document indices best first (ties keep input order), cut to `top_n`."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return order[:top_n] if top_n is not None else order


def scores_in_order(scores: list[float], top_n: int | None) -> list[float | None]:
    """Nexa's `result`: every score in input order, None for documents outside the top_n."""
    kept = set(ranking(scores, top_n))
    return [score if i in kept else None for i, score in enumerate(scores)]
