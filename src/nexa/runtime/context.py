"""The context a model gets by default: its trained length, lowered only as far as its memory budget needs.

An agent's first request carries its whole system prompt and tool list (tens of thousands of tokens), so a fixed
small default answers none of them. Like llama-server's --fit, nexa starts from the length the model was trained
for (its GGUF's `<arch>.context_length`) and lowers it until the model's estimated footprint fits its budgets: the
RAM budget, and each GPU's budget when it is offloaded. Its slots share this one KV cache, so one long request
can use all of it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from nexa.runtime.memory import Footprint

# llama.cpp's --fit-ctx: the context is not lowered below this to fit; past it layers stay in RAM (ngl -1) or
# the budget refuses the model with the fix.
MIN_FIT = 4096
# A header without a context length (or an unreadable one): llama.cpp's usual default.
FALLBACK = 4096
# Embedders and rerankers take an input in one batch as long as their context, and their compute buffer grows
# with it; inputs are sentences and passages, so their context stops here.
RETRIEVAL_CAP = 8192
STEP = 256  # llama.cpp pads a context to a multiple of 256


def fit_context(
    trained: int, need: Callable[[int], Footprint], ram_budget: int, device_budgets: Mapping[str, int]
) -> int:
    """The largest context up to `trained` whose footprint (`need(ctx)`) fits the RAM budget and each GPU's
    budget; never below MIN_FIT (or `trained` if shorter). The estimate grows with the context, so a binary
    search over multiples of STEP finds it in a dozen estimates."""

    def fits(ctx: int) -> bool:
        footprint = need(ctx)
        return footprint.ram <= ram_budget and all(
            size <= device_budgets.get(name, size) for name, size in footprint.devices.items()
        )

    if trained <= MIN_FIT or fits(trained):
        return trained
    low, high = MIN_FIT // STEP, trained // STEP
    if not fits(low * STEP):
        return MIN_FIT
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle * STEP):
            low = middle
        else:
            high = middle - 1
    return low * STEP
