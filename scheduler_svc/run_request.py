"""The run request a fire emits: its run id (deterministic for scheduled fires, so every
replica and restart names a fire alike), the `RunRequested` message, and the attributes of the
fire's ``send`` span."""

from __future__ import annotations

import secrets
from functools import lru_cache

from google.protobuf.timestamp_pb2 import Timestamp

from campaign_common import retry_policy
from campaign_common.retry_policy import RetryPolicy
from campaign_common.runs.limits import RunLimits, limits_to_proto
from campaign_common.timeutil import now_ms
from campaigns.v1 import events_pb2
from scheduler_svc.model import Schedule


def scheduled_run_id(schedule_id: str, fire_ms: int) -> str:
    """Deterministic, so every replica and every restart names a fire the same way."""
    return f"{schedule_id}:{fire_ms}"


def manual_run_id(schedule_id: str, at_ms: int) -> str:
    return f"{schedule_id}:manual-{at_ms}-{secrets.token_hex(4)}"


def run_request(
    schedule: Schedule, run_id: str, scheduled_ms: int, trigger: int
) -> events_pb2.RunRequested:
    # Filled in place, the policies merged from their encoding (shared by every schedule with
    # the same ones): building nested messages to copy in costs more than the rest of a fire.
    request = events_pb2.RunRequested(
        run_id=run_id,
        schedule_id=schedule.schedule_id,
        campaign_id=schedule.campaign_id,
        attempt=1,
        trigger=trigger,  # type: ignore[arg-type]
    )
    _set_ms(request.scheduled_for, scheduled_ms)
    _set_ms(request.requested_at, now_ms())
    scrape = request.scrape
    scrape.urls.extend(schedule.scrape.urls)
    for name, selector in schedule.scrape.selectors:
        scrape.selectors[name] = selector
    request.MergeFromString(_policies(schedule.limits, schedule.retry))
    return request


def _set_ms(timestamp: Timestamp, ms: int) -> None:
    """``timestamp.FromMilliseconds(ms)`` without its range checks (Python code, and a fire's
    times are a clock reading or a validated fire time)."""
    timestamp.seconds, millis = divmod(ms, 1000)
    timestamp.nanos = millis * 1_000_000


@lru_cache(maxsize=1024)
def _policies(limits: RunLimits, retry: RetryPolicy) -> bytes:
    """A run request's limits and retry policy, encoded (merged into each request)."""
    message = events_pb2.RunRequested(
        limits=limits_to_proto(limits), retry_policy=retry_policy.to_proto(retry)
    )
    return message.SerializeToString()


def send_attributes(schedule: Schedule, run_id: str, stream: str) -> dict[str, str]:
    """Attributes of the PRODUCER span ``send`` of a fire (messaging semantic conventions).

    The run id is the message's id: deterministic, the dedupe key of the emission.
    """
    return {
        "messaging.system": "redis",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": stream,
        "messaging.message.id": run_id,
        "run.id": run_id,
        "schedule.id": schedule.schedule_id,
        "campaign.id": schedule.campaign_id,
    }
