"""Turning a due fire into exactly one run request, or one SKIPPED run saying why it did not
run; and manual triggers into new runs.

Emission is conditioned on the schedule as stored, never on this replica's copy of it:
1. A command appends its event (version v+1), then the schedule's emission guard is raised to
   v+1 (active only for an ACTIVE schedule), and only then does the command answer
   (`scheduler_svc.commands`, `scheduler_svc.store`).
2. A replica fires from its copy at version v: the emission script emits only while the guard
   is at v and active, in one atomic step with the dedupe check and the XADD.
3. So once a pause (delete, re-time, completion) has answered, no fire computed from v can be
   emitted: a replica that applied the change has disarmed the schedule, and one that has not
   (frozen, lagging) fires from v and is refused (`Emission.STALE`: logged, counted as
   ``stale``, never retried). A fire emitted before the raise was emitted before the answer,
   and no fire is emitted before its nominal time, so no run's nominal time is after it.

A fire is emitted while it is within the catch-up window (the schedule's own, else the
service's default) of the time it was due (its nominal time plus its jitter). After that it is
recorded as a SKIPPED run with the reason: ``MISSED_REASON`` for fires missed while no
scheduler ran (start-up), ``missed (emission failed: <error>)`` for a fire whose emission kept
failing for the whole window and for the fires that came due meanwhile (the timer hands those
over once it gets to them), ``LATE_REASON`` for a fire reached too late otherwise (a frozen
process). The record is retried with jittered backoff until the state Redis answers or the
scheduler stops (the timer's shutdown cancels it), so no fire vanishes without a trace.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable

from apscheduler.triggers.base import BaseTrigger
from opentelemetry import context, trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind
from redis.exceptions import RedisError

from campaign_common.envelope import span_headers
from campaign_common.observability.logs import run_logging
from campaign_common.observability.telemetry import mark_error, tracer
from campaign_common.runs.emission import Emission
from campaign_common.runs.log import RunLog, ScheduleRef
from campaign_common.tasks import raise_if_cancelling
from campaign_common.timeutil import now_ms
from campaigns.v1 import events_pb2, run_pb2
from scheduler_svc import metrics
from scheduler_svc.batcher import Batcher
from scheduler_svc.model import Schedule, ScheduleState, TimingKind
from scheduler_svc.run_request import manual_run_id, run_request, scheduled_run_id, send_attributes
from scheduler_svc.triggers import FireTimes, build_trigger, due_ms, fires_left, next_fire_ms

log = logging.getLogger(__name__)
_tracer = tracer(__name__)
MISSED_REASON = "missed (scheduler down)"
LATE_REASON = "missed (scheduler behind)"
# At most this many missed fires per schedule are recorded one by one (the newest ones).
# Bounds the work after a long outage of a fast schedule.
MAX_MISSED_RECORDS = 100
_MAX_MISSED_SCAN = 100_000
# A fire handed in just past the window is still emitted: the timer reads the clock a moment
# before this module does, and start-up arms its catch-up fires a moment after computing the
# window. Fires in that margin are late, not missed.
_LATE_GRACE_MS = 1000
_ROOT = Context()  # a fire's span has no parent
# The longest bookkeeping after a fire waits for the fires still being emitted (`quiet`).
_QUIET_MAX_S = 5.0
_FIRST_DELAY_S = 0.1
_MAX_DELAY_S = 5.0


def _backoff(delay_s: float) -> tuple[float, float]:
    """(jittered pause now, next delay): replicas retrying together spread out."""
    return delay_s * random.uniform(0.5, 1.0), min(delay_s * 2, _MAX_DELAY_S)


class Firing:
    def __init__(self, runs: RunLog, retry_window_ms: int, *, max_in_flight: int = 32) -> None:
        self._runs = runs
        self._window_ms = retry_window_ms
        # A burst (thousands of schedules due at one instant) leaves in a few script calls on
        # a few connections (`Batcher`); recording missed fires, one script each, queues here.
        # The fires' pool stays within its size: none fails with "too many connections".
        self._emitter = Batcher(
            runs.emit_all, max_calls=max(1, min(4, max_in_flight)), name="emission-call"
        )
        self._in_flight = asyncio.Semaphore(max_in_flight)
        # schedule id -> (version, reason): why the schedule's last fire was not emitted, the
        # reason recorded for the fires handed in too late after it. Kept from a failed fire
        # until the schedule's next emission attempt answers.
        self._behind: dict[str, tuple[int, str]] = {}
        # Fires between their start and their answer; `quiet` is set while there are none.
        self._emitting = 0
        self._quiet = asyncio.Event()
        self._quiet.set()
        self._quiet_cap: asyncio.TimerHandle | None = None

    def _stream_of(self, schedule: Schedule) -> str:
        return self._runs.partitions.of(schedule.campaign_id).runs_stream

    async def fire(self, schedule: Schedule, fire_ms: int) -> Emission:
        """Emit the scheduled run, or record it as missed once it is past the window.

        Returns what happened (true if this call emitted it). While the state Redis is
        unreachable the emission is retried with backoff until the fire leaves the catch-up
        window; then it is recorded as missed (see the module doc).
        """
        run_id = scheduled_run_id(schedule.schedule_id, fire_ms)
        # Each fire starts a new trace: the scraper continues it from the envelope. A span
        # that is not recorded (no exporter) is ids only: no attributes, and made current
        # without the SDK's context manager (its logs still carry the trace id).
        span = _tracer.start_span("send", context=_ROOT, kind=SpanKind.PRODUCER)
        headers = span_headers(span.get_span_context())
        self._begin()
        try:
            if span.is_recording():
                span.set_attributes(send_attributes(schedule, run_id, self._stream_of(schedule)))
                with trace.use_span(span, end_on_exit=True), run_logging(run_id):
                    return await self._emit_or_record(schedule, fire_ms, run_id, headers)
            token = context.attach(trace.set_span_in_context(span, _ROOT))
            try:
                with run_logging(run_id):
                    return await self._emit_or_record(schedule, fire_ms, run_id, headers)
            finally:
                context.detach(token)
        finally:
            self._end()

    def _begin(self) -> None:
        self._emitting += 1
        if self._quiet.is_set():
            self._quiet.clear()
            loop = asyncio.get_running_loop()
            self._quiet_cap = loop.call_later(_QUIET_MAX_S, self._quiet.set)

    def _end(self) -> None:
        self._emitting -= 1
        if self._emitting == 0:
            self._quiet.set()
            if self._quiet_cap is not None:
                self._quiet_cap.cancel()
                self._quiet_cap = None

    @property
    def emitting(self) -> int:
        """Fires between their start and their answer."""
        return self._emitting

    async def quiet(self) -> None:
        """Return once no fire is being emitted, or at most ``_QUIET_MAX_S`` after the
        current ones began: a burst's bookkeeping (completions) waits behind its emissions
        instead of sharing the event loop with them."""
        await self._quiet.wait()

    async def _emit_or_record(
        self, schedule: Schedule, fire_ms: int, run_id: str, trace_headers: tuple[str, str]
    ) -> Emission:
        request = run_request(schedule, run_id, fire_ms, run_pb2.RUN_TRIGGER_SCHEDULED)
        due = fire_ms
        if schedule.timing.jitter_s:
            due = due_ms(schedule, build_trigger(schedule.timing, schedule.created_at_ms), fire_ms)
        deadline_ms = due + schedule.catch_up_window_ms(self._window_ms)
        if now_ms() > deadline_ms + _LATE_GRACE_MS:
            return await self._record(schedule, request, self._late_reason(schedule))
        try:
            emission = await self._emit_with_retry(
                schedule, request, trace_headers, due, deadline_ms
            )
        except RedisError as exc:
            mark_error(trace.get_current_span(), type(exc).__name__, str(exc))
            reason = f"missed (emission failed: {exc})"
            self._behind[schedule.schedule_id] = (schedule.version, reason)
            return await self._record(schedule, request, reason)
        self._behind.pop(schedule.schedule_id, None)
        return emission

    def _late_reason(self, schedule: Schedule) -> str:
        behind = self._behind.get(schedule.schedule_id)
        return behind[1] if behind is not None and behind[0] == schedule.version else LATE_REASON

    async def _emit_with_retry(
        self,
        schedule: Schedule,
        request: events_pb2.RunRequested,
        trace_headers: tuple[str, str],
        due: int,
        deadline_ms: int,
    ) -> Emission:
        delay_s = _FIRST_DELAY_S
        while True:
            try:
                call = self._runs.request_call(
                    request,
                    dedupe=True,
                    max_total=schedule.limits.max_total_runs,
                    schedule_version=schedule.version,
                    trace_headers=trace_headers,
                )
                emission = await self._emitter.submit(call)
            except RedisError as exc:
                raise_if_cancelling()
                if now_ms() > deadline_ms:
                    raise
                pause_s, delay_s = _backoff(delay_s)
                log.warning("emitting %s failed (%s); retrying", request.run_id, exc)
                await asyncio.sleep(pause_s)
                continue
            _report(request, emission, schedule.version, due)
            return emission

    async def _record(
        self, schedule: Schedule, request: events_pb2.RunRequested, reason: str
    ) -> Emission:
        """Record the fire as a SKIPPED run; retried until Redis answers or we are cancelled."""
        delay_s = _FIRST_DELAY_S
        while True:
            raise_if_cancelling()  # a cancellation swallowed inside a Redis call still stops us
            try:
                async with self._in_flight:
                    recorded = await self._runs.record_missed(
                        request, reason, schedule_version=schedule.version
                    )
            except RedisError as exc:
                raise_if_cancelling()
                pause_s, delay_s = _backoff(delay_s)
                log.warning(
                    "recording missed fire %s failed (%s); retrying in %.1fs",
                    request.run_id,
                    exc,
                    pause_s,
                )
                await asyncio.sleep(pause_s)
                continue
            if recorded:
                metrics.MISSED.inc()
                log.warning(
                    "recorded a missed fire as skipped",
                    extra={"run_id": request.run_id, "reason": reason},
                )
            metrics.FIRES.labels(result="missed" if recorded else recorded.value).inc()
            return recorded

    async def exhausted(self, schedule: Schedule) -> bool:
        """True when the schedule has no scheduled runs left (one-shot fired, cap reached)."""
        if schedule.timing.kind is TimingKind.RUN_AT:
            return True
        if schedule.timing.end_ms and not fires_left(schedule, now_ms()):
            return True  # past its end time
        cap = schedule.limits.max_total_runs
        return cap > 0 and await self._runs.emitted_count(_ref(schedule)) >= cap

    async def trigger(self, schedule: Schedule) -> str:
        """Request a manual run now (paused schedules too); its run id.

        Not guarded by the schedule's version; deduplicated by its unique run id, so a re-send
        of the emission after a lost reply requests nothing more.
        """
        at_ms = now_ms()
        run_id = manual_run_id(schedule.schedule_id, at_ms)
        request = run_request(schedule, run_id, at_ms, run_pb2.RUN_TRIGGER_MANUAL)
        with _tracer.start_as_current_span(
            "send",
            kind=SpanKind.PRODUCER,
            attributes=send_attributes(schedule, run_id, self._stream_of(schedule)),
        ):
            await self._runs.request_run(request, dedupe=False)
        return run_id

    async def close(self) -> None:
        """Cancel emissions in flight (shutdown, after the timer stopped handing in fires)."""
        await self._emitter.close()

    async def exhausted_of(self, schedules: list[Schedule]) -> list[Schedule]:
        """Start-up: the active capped schedules whose cap is reached (a crash came between
        their last fire and COMPLETED); one round trip per batch, not one per schedule."""
        capped = [
            s for s in schedules if s.state is ScheduleState.ACTIVE and s.limits.max_total_runs > 0
        ]
        counts = await self._runs.emitted_counts([_ref(s) for s in capped])
        return [
            s for s, count in zip(capped, counts, strict=True) if count >= s.limits.max_total_runs
        ]

    async def record_missed(
        self,
        schedules: list[Schedule],
        until: Callable[[Schedule], int],
        fire_times: FireTimes,
    ) -> int:
        """Record fires due before ``until(schedule)`` that nobody emitted as SKIPPED runs.

        Looks from each schedule's newest scheduled run (or its last change, if later) up to
        ``until(schedule)`` (the start of its catch-up window: fires after it are emitted
        instead). Only schedules with a fire between their last change and that point can
        have missed one; their newest runs are read in batches. Returns how many were recorded.
        """
        candidates = []
        for schedule in schedules:
            if schedule.state is not ScheduleState.ACTIVE:
                continue
            trigger = fire_times.trigger(schedule)
            if fire_times.any_between(trigger, schedule.updated_at_ms, until(schedule)):
                candidates.append((schedule, trigger))
        lasts = await self._runs.last_scheduled_fires_ms([_ref(s) for s, _ in candidates])
        recorded = 0
        for (schedule, trigger), last in zip(candidates, lasts, strict=True):
            since = max(last or 0, schedule.updated_at_ms)
            recorded += await self._record_missed_between(schedule, trigger, since, until(schedule))
        return recorded

    async def _record_missed_between(
        self, schedule: Schedule, trigger: BaseTrigger, since_ms: int, until_ms: int
    ) -> int:
        recorded = 0
        for fire_ms in fires_between(trigger, since_ms, until_ms):
            run_id = scheduled_run_id(schedule.schedule_id, fire_ms)
            request = run_request(schedule, run_id, fire_ms, run_pb2.RUN_TRIGGER_SCHEDULED)
            emission = await self._runs.record_missed(
                request, MISSED_REASON, schedule_version=schedule.version
            )
            recorded += emission is Emission.EMITTED
        if recorded:
            metrics.MISSED.inc(recorded)
            log.warning(
                "recorded missed fires as skipped",
                extra={"schedule_id": schedule.schedule_id, "recorded": recorded},
            )
        return recorded


def _ref(schedule: Schedule) -> ScheduleRef:
    return schedule.schedule_id, schedule.campaign_id


def _report(
    request: events_pb2.RunRequested, emission: Emission, version: int, due_ms: int
) -> None:
    if emission is Emission.EMITTED:
        lag_ms = now_ms() - due_ms  # after the fire was due (nominal time + jitter)
        metrics.FIRE_LAG.observe(lag_ms / 1000)
        log.info("fired", extra={"run_id": request.run_id, "lag_ms": lag_ms})
    elif emission is Emission.STALE:
        log.warning(
            "refused a stale fire: the schedule is no longer active at version %d",
            version,
            extra={"run_id": request.run_id, "schedule_version": version},
        )
    _FIRES[emission].inc()


# The fire counter's children by result, looked up once (`labels` takes a lock per call).
_FIRES = {emission: metrics.FIRES.labels(result=emission.value) for emission in Emission}


def fires_between(trigger: BaseTrigger, since_ms: int, until_ms: int) -> deque[int]:
    """The newest MAX_MISSED_RECORDS fire times in (since_ms, until_ms), oldest first."""
    fires: deque[int] = deque(maxlen=MAX_MISSED_RECORDS)
    previous = since_ms
    for _ in range(_MAX_MISSED_SCAN):
        fire = next_fire_ms(trigger, after_ms=previous + 1)
        if fire is None or fire >= until_ms:
            break
        fires.append(fire)
        previous = fire
    return fires
