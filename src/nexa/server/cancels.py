"""Telling a cancellation of the router's own (a body's deadline, a client that left) from any other, by
asyncio.timeout's rule, on every Python nexa runs on: 3.10 counts no cancellations on a task."""

from __future__ import annotations

import asyncio
from typing import Any


def pending(task: asyncio.Task[Any]) -> int:
    """The cancellations requested of `task` and not withdrawn (always 0 on Python 3.10)."""
    return task.cancelling() if hasattr(task, "cancelling") else 0


def ours(task: asyncio.Task[Any], before: int) -> bool:
    """Withdraw one cancellation of ours, whose CancelledError was caught, and say whether no other is pending
    beyond the `before` counted when we began (then the error is ours to turn into another). Python 3.10 cannot
    tell: there a cancellation that comes with ours is taken for ours."""
    return (task.uncancel() if hasattr(task, "uncancel") else 0) <= before
