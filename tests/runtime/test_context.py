"""The default context: a model's trained length, lowered only as far as its RAM and GPU budgets need."""

from __future__ import annotations

from nexa.runtime.context import MIN_FIT, STEP, fit_context
from nexa.runtime.memory import Footprint

PER_TOKEN = 1000  # bytes of KV cache a token, in these examples
WEIGHTS = 2_000_000


def on_cpu(ctx: int) -> Footprint:
    return Footprint(WEIGHTS + PER_TOKEN * ctx)


def test_the_trained_length_when_it_fits():
    assert fit_context(131072, on_cpu, WEIGHTS + PER_TOKEN * 131072, {}) == 131072


def test_lowered_to_the_largest_multiple_of_256_that_fits():
    budget = WEIGHTS + PER_TOKEN * 50_000
    ctx = fit_context(131072, on_cpu, budget, {})
    assert ctx % STEP == 0 and on_cpu(ctx).ram <= budget < on_cpu(ctx + STEP).ram
    assert ctx == 49920


def test_never_below_the_floor_nor_above_a_short_trained_length():
    assert fit_context(131072, on_cpu, WEIGHTS, {}) == MIN_FIT  # the budget then refuses it, with the fix
    assert fit_context(2048, on_cpu, 0, {}) == 2048


def test_on_a_gpu_the_context_fits_its_device_budget():
    def offloaded(ctx: int) -> Footprint:
        return Footprint(100, {"CUDA0": WEIGHTS + PER_TOKEN * ctx})

    ctx = fit_context(32768, offloaded, 10**12, {"CUDA0": WEIGHTS + PER_TOKEN * 20_000})
    assert ctx == 19968
    assert fit_context(32768, offloaded, 10**12, {"CUDA0": WEIGHTS + PER_TOKEN * 10**6}) == 32768
