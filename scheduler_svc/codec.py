"""Conversions between the domain records and their protobuf forms (API and event bodies)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache
from typing import Any, TypeVar, cast

from google.protobuf.message import Message

from campaign_common import retry_policy
from campaign_common.redaction import redact
from campaign_common.runs.deadletters import DeadLetterRecord
from campaign_common.runs.limits import limits_from_proto, limits_to_proto
from campaign_common.runs.record import RunRecord, RunState
from campaign_common.timeutil import ms_to_timestamp, timestamp_to_ms
from campaigns.v1 import events_pb2, run_pb2, schedule_pb2
from campaigns.v1.scheduler_service_pb2 import (
    AddScheduledCampaignRequest,
    UpdateScheduleRequest,
)
from scheduler_svc.model import (
    CronDialect,
    NewSchedule,
    Schedule,
    ScheduleState,
    Scrape,
    Timing,
    TimingKind,
)

_STATE_TO_PROTO = {
    ScheduleState.ACTIVE: schedule_pb2.SCHEDULE_STATE_ACTIVE,
    ScheduleState.PAUSED: schedule_pb2.SCHEDULE_STATE_PAUSED,
    ScheduleState.COMPLETED: schedule_pb2.SCHEDULE_STATE_COMPLETED,
}
_STATE_FROM_PROTO = {value: key for key, value in _STATE_TO_PROTO.items()}


_DIALECT_TO_PROTO = {
    CronDialect.POSIX5: schedule_pb2.CRON_DIALECT_POSIX5,
    CronDialect.SECONDS6: schedule_pb2.CRON_DIALECT_SECONDS6,
}
_DIALECT_FROM_PROTO = {value: key for key, value in _DIALECT_TO_PROTO.items()}


def _bound_ms(spec: schedule_pb2.ScheduleSpec, field: str) -> int:
    return timestamp_to_ms(getattr(spec, field)) if spec.HasField(field) else 0


def timing_from_proto(spec: schedule_pb2.ScheduleSpec) -> Timing | None:
    kind = spec.WhichOneof("kind")
    if kind == "cron":
        # Unknown dialect numbers read as the default, as unknown overlap policies do.
        dialect = _DIALECT_FROM_PROTO.get(spec.cron_dialect, CronDialect.POSIX5)
        timing = Timing(TimingKind.CRON, cron=spec.cron.strip(), dialect=dialect)
    elif kind == "interval_seconds":
        timing = Timing(TimingKind.INTERVAL, interval_s=spec.interval_seconds)
    elif kind == "run_at":
        timing = Timing(TimingKind.RUN_AT, run_at_ms=timestamp_to_ms(spec.run_at))
    else:
        return None
    return replace(
        timing,
        timezone=spec.timezone or "UTC",
        start_ms=_bound_ms(spec, "start_time"),
        end_ms=_bound_ms(spec, "end_time"),
        jitter_s=spec.jitter_seconds,
    )


def timing_to_proto(timing: Timing) -> schedule_pb2.ScheduleSpec:
    spec = schedule_pb2.ScheduleSpec(timezone=timing.timezone, jitter_seconds=timing.jitter_s)
    if timing.start_ms:
        spec.start_time.CopyFrom(ms_to_timestamp(timing.start_ms))
    if timing.end_ms:
        spec.end_time.CopyFrom(ms_to_timestamp(timing.end_ms))
    if timing.kind is TimingKind.CRON:
        spec.cron = timing.cron
        spec.cron_dialect = _DIALECT_TO_PROTO[timing.dialect]
    elif timing.kind is TimingKind.INTERVAL:
        spec.interval_seconds = timing.interval_s
    else:
        spec.run_at.CopyFrom(ms_to_timestamp(timing.run_at_ms))
    return spec


def scrape_from_proto(scrape: schedule_pb2.ScrapeSpec) -> Scrape:
    selectors = scrape.selectors
    return Scrape(tuple(scrape.urls), tuple(sorted(selectors.items())) if selectors else ())


def scrape_to_proto(scrape: Scrape) -> schedule_pb2.ScrapeSpec:
    return schedule_pb2.ScrapeSpec(urls=list(scrape.urls), selectors=dict(scrape.selectors))


def new_schedule_from_proto(
    request: AddScheduledCampaignRequest | UpdateScheduleRequest,
) -> NewSchedule:
    """A create or update request as a command (an update has no campaign id)."""
    spec = request.schedule if request.HasField("schedule") else None
    return NewSchedule(
        campaign_id=request.campaign_id if isinstance(request, AddScheduledCampaignRequest) else "",
        name=request.name,
        timing=_shared("spec", spec, timing_from_proto) if spec is not None else None,
        scrape=scrape_from_proto(request.scrape),
        limits=_shared("limits", request.limits, limits_from_proto),
        retry=_shared("retry", request.retry_policy, retry_policy.from_proto),
        request_id=request.request_id if isinstance(request, AddScheduledCampaignRequest) else "",
    )


def schedule_to_proto(
    schedule: Schedule, next_fires_ms: list[int] | None = None
) -> schedule_pb2.Schedule:
    # Filled in place (no intermediate messages to copy): this runs twice per create.
    message = schedule_pb2.Schedule(
        schedule_id=schedule.schedule_id,
        campaign_id=schedule.campaign_id,
        name=schedule.name,
        version=schedule.version,
        state=_STATE_TO_PROTO[schedule.state],
        paused_note=schedule.paused_note,
    )
    message.spec.CopyFrom(_spec_message(schedule.timing))
    message.scrape.urls.extend(schedule.scrape.urls)
    message.scrape.selectors.update(schedule.scrape.selectors)
    message.created_at.FromMilliseconds(schedule.created_at_ms)
    message.updated_at.FromMilliseconds(schedule.updated_at_ms)
    for fire_ms in next_fires_ms or ():
        message.next_fire_times.add().FromMilliseconds(fire_ms)
    message.limits.CopyFrom(_limits_message(schedule.limits))
    message.retry_policy.CopyFrom(_retry_message(schedule.retry))
    return message


# The encoded forms of the parts many schedules share, by value. Each is only ever copied into
# a message under construction (the constructor copies message arguments), never handed out.
_spec_message = lru_cache(maxsize=4096)(timing_to_proto)
_limits_message = lru_cache(maxsize=4096)(limits_to_proto)
_retry_message = lru_cache(maxsize=4096)(retry_policy.to_proto)


# Decoded parts many schedules share (timing, limits, retry policy), by their encoded bytes:
# a fleet of 100,000 schedules holds a few hundred distinct ones, decoded once, kept once.
_SHARED: dict[tuple[str, bytes], object] = {}
_SHARED_MAX = 65_536

T = TypeVar("T")


def _shared(kind: str, message: Message, decode: Callable[[Any], T]) -> T:
    """``decode(message)``, decoded once per distinct encoding (None is not kept)."""
    key = (kind, message.SerializeToString(deterministic=True))
    found = _SHARED.get(key)
    if found is None:
        if len(_SHARED) >= _SHARED_MAX:
            _SHARED.clear()  # a bound, not an eviction policy: values are cheap to rebuild
        found = _SHARED[key] = decode(message)
    return cast(T, found)


def _timing_or_default(spec: schedule_pb2.ScheduleSpec) -> Timing:
    return timing_from_proto(spec) or Timing(TimingKind.INTERVAL)


def redacted(message: schedule_pb2.Schedule) -> schedule_pb2.Schedule:
    """``message`` as shown to callers: no URL credentials (of schedules stored before the
    rule refused them) in its URLs or pause note."""
    urls = [redact(url) for url in message.scrape.urls]
    if urls != list(message.scrape.urls):
        del message.scrape.urls[:]
        message.scrape.urls.extend(urls)
    message.paused_note = redact(message.paused_note)
    return message


def schedule_from_proto(message: schedule_pb2.Schedule) -> Schedule:
    return Schedule(
        schedule_id=message.schedule_id,
        campaign_id=message.campaign_id,
        name=message.name,
        timing=_shared("timing", message.spec, _timing_or_default),
        scrape=scrape_from_proto(message.scrape),
        version=message.version,
        state=_STATE_FROM_PROTO.get(message.state, ScheduleState.ACTIVE),
        paused_note=message.paused_note,
        created_at_ms=timestamp_to_ms(message.created_at),
        updated_at_ms=timestamp_to_ms(message.updated_at),
        limits=_shared("limits", message.limits, limits_from_proto),
        # Events from before retry policies have none: they decode to the defaults.
        retry=_shared("retry", message.retry_policy, retry_policy.from_proto),
    )


_EVENT_TYPES = {
    "created": events_pb2.ScheduleCreated,
    "updated": events_pb2.ScheduleUpdated,
    "resumed": events_pb2.ScheduleResumed,
    "deleted": events_pb2.ScheduleDeleted,
}


def schedule_event(kind: str, schedule: Schedule, note: str = "") -> Message:
    """The log event for a change: created, updated, paused, resumed or deleted."""
    body = schedule_to_proto(schedule)
    if kind == "paused":
        return events_pb2.SchedulePaused(schedule=body, note=note)
    event: Message = _EVENT_TYPES[kind](schedule=body)
    return event


_SCHEDULE_EVENTS = (
    events_pb2.ScheduleCreated,
    events_pb2.ScheduleUpdated,
    events_pb2.SchedulePaused,
    events_pb2.ScheduleResumed,
    events_pb2.ScheduleDeleted,
)


# Events decoded lately, by type and encoding: the log follower decodes each entry once and
# compaction twice more (a batch's guards, then its fold), so the second decode of a batch is a
# lookup. Equal bytes of one event type are the same schedule, so the key cannot mislead; FIFO
# over a few batches (`SchedulerSettings.log_batch` entries each) is all it needs to hold.
_DECODED: dict[tuple[type, bytes], tuple[Schedule, bool]] = {}
_DECODED_MAX = 2048


def schedule_from_event(event: Message) -> tuple[Schedule, bool] | None:
    """(schedule after the event, deleted?) for schedule events; None for other messages."""
    if not isinstance(event, _SCHEDULE_EVENTS):
        return None
    key = (type(event), event.SerializeToString())
    found = _DECODED.get(key)
    if found is None:
        if len(_DECODED) >= _DECODED_MAX:
            del _DECODED[next(iter(_DECODED))]  # the oldest
        deleted = isinstance(event, events_pb2.ScheduleDeleted)
        found = _DECODED[key] = (schedule_from_proto(event.schedule), deleted)
    return found


def dead_letter_to_proto(record: DeadLetterRecord) -> run_pb2.DeadLetter:
    request = record.request
    return run_pb2.DeadLetter(
        id=record.id,
        run_id=request.run_id,
        schedule_id=request.schedule_id,
        campaign_id=request.campaign_id,
        attempt=request.attempt,
        error=redact(record.error),
        deliveries=record.deliveries,
        dead_lettered_at=ms_to_timestamp(record.dead_at_ms),
    )


def run_to_proto(record: RunRecord) -> run_pb2.Run:
    run = run_pb2.Run(
        run_id=record.run_id,
        schedule_id=record.schedule_id,
        campaign_id=record.campaign_id,
        state=f"RUN_STATE_{record.state.value}",
        attempt=record.attempt,
        scheduled_for=ms_to_timestamp(record.scheduled_for_ms),
        error=redact(record.error),
        trigger=f"RUN_TRIGGER_{record.trigger}",
    )
    if record.started_at_ms:
        run.started_at.CopyFrom(ms_to_timestamp(record.started_at_ms))
    if record.finished_at_ms:
        run.finished_at.CopyFrom(ms_to_timestamp(record.finished_at_ms))
    # Only while the retry waits: the projection may keep the time after the attempt starts.
    if record.next_attempt_at_ms and record.state is RunState.RETRY_SCHEDULED:
        run.next_attempt_at.CopyFrom(ms_to_timestamp(record.next_attempt_at_ms))
    return run
