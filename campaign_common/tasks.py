"""asyncio task helpers for loops that must stop cleanly.

Background loops that talk to Redis stop cooperatively: a stop event is checked between
commands and wakes their pauses, so no command is ever cancelled half-way. Cancelling a
redis-py (8.x) command can leave the task stuck in the connection pool's release, or swallow
the cancellation; `cancel_and_wait` is only the bounded fallback for a loop that overstays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

log = logging.getLogger(__name__)


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` unless ``stop`` is set first (then return at once)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def every(
    interval_s: float, stop: asyncio.Event, work: Callable[[], Awaitable[object]], what: str
) -> None:
    """Run ``work`` every ``interval_s`` until ``stop``; a Redis outage skips a round (logged
    as ``<what> skipped this round``), anything else ends the loop (its supervisor restarts
    it)."""
    while not stop.is_set():
        try:
            await work()
        except RedisError as exc:
            raise_if_cancelling()
            log.warning("%s skipped this round: %s", what, exc)
        await pause(stop, interval_s)


def raise_if_cancelling() -> None:
    """Raise CancelledError when the current task has a cancellation pending."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def cancel_and_wait(task: asyncio.Task[Any] | None, timeout_s: float) -> None:
    """Cancel ``task`` and wait at most ``timeout_s`` for it to finish (logged if it won't)."""
    if task is None or task.done():
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        await asyncio.wait_for(asyncio.shield(task), timeout_s)
    if not task.done():
        log.error(
            "task %s did not stop within %.1fs; leaving it behind", task.get_name(), timeout_s
        )
