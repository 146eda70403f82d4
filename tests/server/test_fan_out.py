"""Bounded fan-out of worker requests (nexa.server.relay.gather_limited)."""

from __future__ import annotations

import asyncio

from nexa.server.relay import gather_limited


def test_gather_limited_keeps_order_and_caps_how_many_run_at_once():
    running = peak = 0

    async def job(i: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0)  # yield, so the other jobs get their turn
        running -= 1
        return i

    assert asyncio.run(gather_limited((job(i) for i in range(20)), limit=3)) == list(range(20))
    assert peak == 3
