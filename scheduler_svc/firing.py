"""Turning a due fire into exactly one run request, and manual triggers into new runs."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque

from opentelemetry.context import Context
from redis.exceptions import RedisError

from campaign_common import retry_policy
from campaign_common.runlog import RunLog
from campaign_common.tasks import raise_if_cancelling
from campaign_common.telemetry import tracer
from campaign_common.timeutil import ms_to_timestamp, now_ms
from campaigns.v1 import events_pb2, run_pb2
from scheduler_svc import metrics
from scheduler_svc.codec import limits_to_proto, scrape_to_proto
from scheduler_svc.model import Schedule, ScheduleState, TimingKind
from scheduler_svc.triggers import build_trigger, next_fire_ms

log = logging.getLogger(__name__)
_tracer = tracer(__name__)
MISSED_REASON = "missed (scheduler down)"
# At most this many missed fires per schedule are recorded one by one (the newest ones);
# the total is logged. Bounds start-up work after a long outage of a fast schedule.
MAX_MISSED_RECORDS = 100
_MAX_MISSED_SCAN = 100_000


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
        limits=limits_to_proto(schedule.limits),
        retry_policy=retry_policy.to_proto(schedule.retry),
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
        run_id = scheduled_run_id(schedule.schedule_id, fire_ms)
        # Each fire starts a new trace: the scraper continues it from the envelope.
        with _tracer.start_as_current_span(
            "fire",
            context=Context(),
            attributes={"run.id": run_id, "schedule.id": schedule.schedule_id},
        ):
            request = run_request(schedule, run_id, fire_ms, run_pb2.RUN_TRIGGER_SCHEDULED)
            return await self._emit_with_retry(schedule, request, fire_ms)

    async def _emit_with_retry(
        self, schedule: Schedule, request: events_pb2.RunRequested, fire_ms: int
    ) -> bool:
        delay_s = 0.1
        while True:
            try:
                emitted = await self._runs.request_run(
                    request, dedupe=True, max_total=schedule.limits.max_total_runs
                )
            except RedisError as exc:
                raise_if_cancelling()
                if now_ms() > fire_ms + self._retry_window_ms:
                    raise
                log.warning("emitting %s failed (%s); retrying", request.run_id, exc)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)
                continue
            if emitted:
                lag_ms = now_ms() - fire_ms
                metrics.FIRE_LAG.observe(lag_ms / 1000)
                log.info("fired", extra={"run_id": request.run_id, "lag_ms": lag_ms})
            metrics.FIRES.labels(result="emitted" if emitted else "deduplicated").inc()
            return emitted

    async def exhausted(self, schedule: Schedule) -> bool:
        """True when the schedule has no scheduled runs left (one-shot fired, cap reached)."""
        if schedule.timing.kind is TimingKind.RUN_AT:
            return True
        cap = schedule.limits.max_total_runs
        return cap > 0 and await self._runs.emitted_count(schedule.schedule_id) >= cap

    async def trigger(self, schedule: Schedule) -> str:
        at_ms = now_ms()
        run_id = manual_run_id(schedule.schedule_id, at_ms)
        request = run_request(schedule, run_id, at_ms, run_pb2.RUN_TRIGGER_MANUAL)
        await self._runs.request_run(request, dedupe=False)
        return run_id

    async def record_missed(self, schedule: Schedule, until_ms: int) -> int:
        """Record fires due before ``until_ms`` that nobody emitted as SKIPPED runs.

        Looks from the newest scheduled run (or the schedule's last change, if later) up to
        ``until_ms`` (the start of the catch-up window: fires after it are emitted instead).
        Returns how many were recorded by this call.
        """
        if schedule.state is not ScheduleState.ACTIVE:
            return 0
        last = await self._runs.last_scheduled_fire_ms(schedule.schedule_id)
        since = max(last or 0, schedule.updated_at_ms)
        missed = _fires_between(schedule, since, until_ms)
        recorded = 0
        for fire_ms in missed:
            run_id = scheduled_run_id(schedule.schedule_id, fire_ms)
            request = run_request(schedule, run_id, fire_ms, run_pb2.RUN_TRIGGER_SCHEDULED)
            recorded += await self._runs.record_missed(request, MISSED_REASON)
        if recorded:
            metrics.MISSED.inc(recorded)
            log.warning(
                "recorded missed fires as skipped",
                extra={"schedule_id": schedule.schedule_id, "recorded": recorded},
            )
        return recorded


def _fires_between(schedule: Schedule, since_ms: int, until_ms: int) -> deque[int]:
    """The newest MAX_MISSED_RECORDS fire times in (since_ms, until_ms)."""
    trigger = build_trigger(schedule.timing, schedule.created_at_ms)
    fires: deque[int] = deque(maxlen=MAX_MISSED_RECORDS)
    previous = since_ms
    for _ in range(_MAX_MISSED_SCAN):
        fire = next_fire_ms(trigger, after_ms=previous + 1)
        if fire is None or fire >= until_ms:
            break
        fires.append(fire)
        previous = fire
    return fires
