"""Turning a due fire into exactly one run request, and manual triggers into new runs."""

from __future__ import annotations

import asyncio
import logging
import secrets

from redis.exceptions import RedisError

from campaign_common.runlog import RunLog
from campaign_common.timeutil import ms_to_timestamp, now_ms
from campaigns.v1 import events_pb2, run_pb2
from scheduler_svc.codec import scrape_to_proto
from scheduler_svc.model import Schedule

log = logging.getLogger(__name__)


def scheduled_run_id(schedule_id: str, fire_ms: int) -> str:
    """Deterministic, so every replica and every restart names a fire the same way."""
    return f"{schedule_id}:{fire_ms}"


def manual_run_id(schedule_id: str, at_ms: int) -> str:
    return f"{schedule_id}:manual-{at_ms}-{secrets.token_hex(4)}"


def run_request(
    schedule: Schedule, run_id: str, scheduled_ms: int, trigger: int
) -> events_pb2.RunRequested:
    return events_pb2.RunRequested(
        run_id=run_id,
        schedule_id=schedule.schedule_id,
        campaign_id=schedule.campaign_id,
        scheduled_for=ms_to_timestamp(scheduled_ms),
        attempt=1,
        trigger=trigger,  # type: ignore[arg-type]
        scrape=scrape_to_proto(schedule.scrape),
        requested_at=ms_to_timestamp(now_ms()),
    )


class Firing:
    def __init__(self, runs: RunLog, retry_window_ms: int) -> None:
        self._runs = runs
        self._retry_window_ms = retry_window_ms

    async def fire(self, schedule: Schedule, fire_ms: int) -> bool:
        """Emit the scheduled run; True if this call emitted it, False if it existed.

        While the state Redis is unreachable the emission is retried with backoff until the
        fire leaves the catch-up window (a restart's catch-up covers the same window).
        """
        request = run_request(
            schedule,
            scheduled_run_id(schedule.schedule_id, fire_ms),
            fire_ms,
            run_pb2.RUN_TRIGGER_SCHEDULED,
        )
        delay_s = 0.1
        while True:
            try:
                emitted = await self._runs.request_run(request, dedupe=True)
            except RedisError as exc:
                if now_ms() > fire_ms + self._retry_window_ms:
                    raise
                log.warning("emitting %s failed (%s); retrying", request.run_id, exc)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)
                continue
            if emitted:
                log.info("fired", extra={"run_id": request.run_id, "lag_ms": now_ms() - fire_ms})
            return emitted

    async def trigger(self, schedule: Schedule) -> str:
        at_ms = now_ms()
        run_id = manual_run_id(schedule.schedule_id, at_ms)
        request = run_request(schedule, run_id, at_ms, run_pb2.RUN_TRIGGER_MANUAL)
        await self._runs.request_run(request, dedupe=False)
        return run_id
