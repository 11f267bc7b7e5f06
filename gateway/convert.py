"""Conversions between the scheduler's protobuf messages and the REST JSON documents.

Owns the REST spelling of everything the scheduler returns: camelCase names, enum values
without their proto prefix (``SCHEDULE_STATE_ACTIVE`` -> ``ACTIVE``), times as RFC 3339 UTC
strings (null when unset), empty "none" strings as null, and proto field paths in error
details as REST paths (``schedule.interval_seconds`` -> ``schedule.intervalSeconds``).
"""

from __future__ import annotations

import re
from typing import Any

from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from campaign_common import retry_policy
from campaign_common.timeutil import datetime_to_ms, ms_to_rfc3339, ms_to_timestamp
from campaigns.v1 import run_pb2, schedule_pb2, scheduler_service_pb2
from gateway.models import (
    AddScheduledCampaignBody,
    RetryPolicyIn,
    RunLimitsIn,
    ScheduleSpecIn,
    UpdateScheduleBody,
)

UNSPECIFIED = "UNSPECIFIED"
_SCHEDULE_STATE = schedule_pb2.ScheduleState.DESCRIPTOR
_RUN_STATE = run_pb2.RunState.DESCRIPTOR
_RUN_TRIGGER = run_pb2.RunTrigger.DESCRIPTOR
_OVERLAP = schedule_pb2.OverlapPolicy.DESCRIPTOR
_DIALECT_BY_NAME = {
    "posix5": schedule_pb2.CRON_DIALECT_POSIX5,
    "seconds6": schedule_pb2.CRON_DIALECT_SECONDS6,
}
_DIALECT_NAME = {value: key for key, value in _DIALECT_BY_NAME.items()}
_OVERLAP_BY_NAME = {
    "UNSPECIFIED": schedule_pb2.OVERLAP_POLICY_UNSPECIFIED,
    "SKIP": schedule_pb2.OVERLAP_POLICY_SKIP,
    "BUFFER_ONE": schedule_pb2.OVERLAP_POLICY_BUFFER_ONE,
    "ALLOW_ALL": schedule_pb2.OVERLAP_POLICY_ALLOW_ALL,
}
# RunLimits fields that are plain numbers (REST camelCase name -> proto name).
_LIMIT_NUMBERS = {
    field.json_name: field.name
    for field in schedule_pb2.RunLimits.DESCRIPTOR.fields
    if field.name != "overlap"
}


def enum_name(enum: EnumDescriptor, value: int, prefix: str) -> str:
    """``RUN_STATE_SUCCEEDED`` -> ``SUCCEEDED``; values this build does not know -> UNSPECIFIED."""
    known = enum.values_by_number.get(value)
    return known.name.removeprefix(prefix) if known is not None else UNSPECIFIED


def _time(message: Message, field: str) -> str | None:
    if not message.HasField(field):
        return None
    return ms_to_rfc3339(getattr(message, field).ToMilliseconds())


def _or_none(text: str) -> str | None:
    return text or None


# --- proto -> JSON -----------------------------------------------------------------------------


def spec_to_json(spec: schedule_pb2.ScheduleSpec) -> dict[str, Any]:
    kind = spec.WhichOneof("kind")
    return {
        "cron": spec.cron if kind == "cron" else None,
        "cronDialect": _DIALECT_NAME.get(spec.cron_dialect, "posix5") if kind == "cron" else None,
        "intervalSeconds": spec.interval_seconds if kind == "interval_seconds" else None,
        "runAt": _time(spec, "run_at") if kind == "run_at" else None,
        "timezone": spec.timezone or "UTC",
        "startTime": _time(spec, "start_time"),
        "endTime": _time(spec, "end_time"),
        "jitterSeconds": spec.jitter_seconds,
    }


def limits_to_json(limits: schedule_pb2.RunLimits) -> dict[str, Any]:
    numbers = {rest: getattr(limits, proto) for rest, proto in _LIMIT_NUMBERS.items()}
    return {"overlap": enum_name(_OVERLAP, limits.overlap, "OVERLAP_POLICY_"), **numbers}


def retry_policy_to_json(message: schedule_pb2.RetryPolicy) -> dict[str, Any]:
    """The effective policy (defaults filled in, as for a schedule stored before policies)."""
    policy = retry_policy.from_proto(message)
    return {
        "maxAttempts": policy.max_attempts,
        "initialDelaySeconds": policy.initial_delay_s,
        "maxDelaySeconds": policy.max_delay_s,
        "multiplier": policy.multiplier,
        "jitter": policy.jitter,
    }


def schedule_to_json(schedule: schedule_pb2.Schedule) -> dict[str, Any]:
    return {
        "scheduleId": schedule.schedule_id,
        "campaignId": schedule.campaign_id,
        "name": schedule.name,
        "schedule": spec_to_json(schedule.spec),
        "scrape": {
            "urls": list(schedule.scrape.urls),
            "selectors": dict(schedule.scrape.selectors),
        },
        "limits": limits_to_json(schedule.limits),
        "retryPolicy": retry_policy_to_json(schedule.retry_policy),
        "version": schedule.version,
        "state": enum_name(_SCHEDULE_STATE, schedule.state, "SCHEDULE_STATE_"),
        "nextFireTimes": [ms_to_rfc3339(t.ToMilliseconds()) for t in schedule.next_fire_times],
        "pausedNote": _or_none(schedule.paused_note),
        "createdAt": _time(schedule, "created_at"),
        "updatedAt": _time(schedule, "updated_at"),
    }


def run_to_json(run: run_pb2.Run) -> dict[str, Any]:
    return {
        "runId": run.run_id,
        "scheduleId": run.schedule_id,
        "campaignId": run.campaign_id,
        "state": enum_name(_RUN_STATE, run.state, "RUN_STATE_"),
        "attempt": run.attempt,
        "scheduledFor": _time(run, "scheduled_for"),
        "startedAt": _time(run, "started_at"),
        "finishedAt": _time(run, "finished_at"),
        "nextAttemptAt": _time(run, "next_attempt_at"),
        "error": _or_none(run.error),
        "trigger": enum_name(_RUN_TRIGGER, run.trigger, "RUN_TRIGGER_"),
    }


def dead_letter_to_json(dead: run_pb2.DeadLetter) -> dict[str, Any]:
    return {
        "id": dead.id,
        "runId": dead.run_id,
        "scheduleId": dead.schedule_id,
        "campaignId": dead.campaign_id,
        "attempt": dead.attempt,
        "error": _or_none(dead.error),
        "deliveries": dead.deliveries,
        "deadLetteredAt": _time(dead, "dead_lettered_at"),
    }


def result_to_json(result: run_pb2.ScrapeResult) -> dict[str, Any]:
    return {
        "runId": result.run_id,
        "url": result.url,
        "statusCode": result.status_code,
        "fields": {f.name: f.text if f.HasField("text") else None for f in result.fields},
        "fetchedAt": _time(result, "fetched_at"),
    }


# --- JSON (validated models) -> proto ----------------------------------------------------------


def spec_to_proto(spec: ScheduleSpecIn) -> schedule_pb2.ScheduleSpec:
    message = schedule_pb2.ScheduleSpec(
        timezone=spec.timezone or "", jitter_seconds=spec.jitter_seconds or 0
    )
    if spec.cron is not None:
        message.cron = spec.cron
    if spec.cron_dialect is not None:
        message.cron_dialect = _DIALECT_BY_NAME[spec.cron_dialect]
    if spec.interval_seconds is not None:
        message.interval_seconds = spec.interval_seconds
    if spec.run_at is not None:
        message.run_at.CopyFrom(ms_to_timestamp(datetime_to_ms(spec.run_at)))
    if spec.start_time is not None:
        message.start_time.CopyFrom(ms_to_timestamp(datetime_to_ms(spec.start_time)))
    if spec.end_time is not None:
        message.end_time.CopyFrom(ms_to_timestamp(datetime_to_ms(spec.end_time)))
    return message


def limits_to_proto(limits: RunLimitsIn | None) -> schedule_pb2.RunLimits:
    message = schedule_pb2.RunLimits()
    if limits is None:
        return message
    if limits.overlap is not None:
        message.overlap = _OVERLAP_BY_NAME[limits.overlap]
    for name, value in limits.model_dump(exclude={"overlap"}, exclude_none=True).items():
        setattr(message, name, value)
    return message


def retry_policy_to_proto(policy: RetryPolicyIn | None) -> schedule_pb2.RetryPolicy:
    """Absent fields stay unset (the scheduler's defaults); an explicit jitter 0 stays 0."""
    message = schedule_pb2.RetryPolicy()
    if policy is None:
        return message
    for name, value in policy.model_dump(exclude_none=True).items():
        setattr(message, name, value)
    return message


def update_request_to_proto(
    schedule_id: str, body: UpdateScheduleBody, expected_version: int
) -> scheduler_service_pb2.UpdateScheduleRequest:
    return scheduler_service_pb2.UpdateScheduleRequest(
        schedule_id=schedule_id,
        expected_version=expected_version,
        name=body.name,
        schedule=spec_to_proto(body.schedule),
        scrape=schedule_pb2.ScrapeSpec(
            urls=list(body.scrape.urls), selectors=dict(body.scrape.selectors)
        ),
        limits=limits_to_proto(body.limits),
        retry_policy=retry_policy_to_proto(body.retry_policy),
    )


def add_request_to_proto(
    body: AddScheduledCampaignBody, request_id: str = ""
) -> scheduler_service_pb2.AddScheduledCampaignRequest:
    """``request_id``: the Idempotency-Key header (the body's requestId when absent)."""
    return scheduler_service_pb2.AddScheduledCampaignRequest(
        campaign_id=body.campaign_id or "",
        name=body.name,
        schedule=spec_to_proto(body.schedule),
        scrape=schedule_pb2.ScrapeSpec(
            urls=list(body.scrape.urls), selectors=dict(body.scrape.selectors)
        ),
        limits=limits_to_proto(body.limits),
        retry_policy=retry_policy_to_proto(body.retry_policy),
        request_id=request_id or body.request_id or "",
        validate_only=body.validate_only,
    )


# --- proto field paths -> REST field paths ------------------------------------------------------

_SEGMENT = re.compile(r"([^.\[\]]+)((?:\[[^\]]*\])*)")


def _camel(name: str) -> str:
    return re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), name)


def _is_map(field: FieldDescriptor) -> bool:
    entry = field.message_type
    return entry is not None and entry.GetOptions().map_entry


def json_field_path(path: str, request: Message | None) -> str:
    """``schedule.interval_seconds`` -> ``schedule.intervalSeconds``, ``scrape.urls[2]`` kept.

    Names are resolved against ``request``'s message type and take each field's
    JSON name; map keys (``scrape.selectors.my_field``) are data and stay verbatim. Segments the
    descriptor does not know are converted from snake_case mechanically.
    """
    # Any: the pure-Python and upb descriptor classes have the same interface, not one type.
    descriptor: Any = request.DESCRIPTOR if request is not None else None
    result, rest = "", path
    while rest:
        match = _SEGMENT.match(rest)
        if match is None:
            return result + rest
        name, indexes = match.groups()
        field = descriptor.fields_by_name.get(name) if descriptor is not None else None
        result += ("." if result else "") + (field.json_name if field else _camel(name)) + indexes
        rest = rest[match.end() :]
        if field is not None and _is_map(field):
            return result + rest
        descriptor = field.message_type if field is not None else None
        rest = rest.removeprefix(".")
    return result
