"""The retry pump: moves next attempts that are due from the delay queue to the runs stream.

Every worker runs one; the move is a single script (`campaign_common.runs.retryqueue`), so pumps
on many workers move each retry exactly once, and any one of them keeps retries flowing.
While the state Redis is down it logs
once that it is waiting, once that it is back, and keeps polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from redis.exceptions import RedisError

from campaign_common.tasks import raise_if_cancelling
from scraper_svc import metrics

log = logging.getLogger(__name__)


class RetryQueueStore(Protocol):
    async def move_due_retries(self, limit: int) -> int: ...


class RetryPump:
    def __init__(self, store: RetryQueueStore, *, interval_s: float, batch: int = 100) -> None:
        self._store = store
        self._interval_s = interval_s
        self._batch = batch
        self._stop = asyncio.Event()
        self._failing = False

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        while not self._stop.is_set():
            moved = await self._pump_once()
            if moved < self._batch:  # a full batch: more may be due, go on at once
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self._interval_s)

    async def _pump_once(self) -> int:
        try:
            moved = await self._store.move_due_retries(self._batch)
        except (RedisError, OSError) as exc:
            raise_if_cancelling()
            if not self._failing:
                log.warning(
                    "retry delay queue in the state Redis unreachable (%s); retrying every poll",
                    exc,
                )
            self._failing = True
            return 0
        if self._failing:
            log.info("retry delay queue reachable again")
            self._failing = False
        if moved:
            metrics.RETRIES_MOVED.inc(moved)
            log.info("moved %d due retries to the runs stream", moved)
        return moved
