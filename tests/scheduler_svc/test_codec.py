"""The codec's fast paths (shared parts, decoded events remembered) change no answer."""

from __future__ import annotations

from dataclasses import replace

from campaign_common.retry_policy import RetryPolicy
from campaign_common.runs.limits import Overlap, RunLimits
from campaigns.v1 import events_pb2
from scheduler_svc.codec import (
    schedule_event,
    schedule_from_event,
    schedule_from_proto,
    schedule_to_proto,
)
from scheduler_svc.model import CronDialect, Schedule, ScheduleState, Scrape, Timing, TimingKind
from tests.scheduler_svc.records import schedule_record


def _variants() -> list[Schedule]:
    base = schedule_record("v", 3, created_at_ms=1_700_000_000_123)
    return [
        base,
        replace(base, state=ScheduleState.PAUSED, paused_note="holiday"),
        replace(base, scrape=Scrape(("http://a.example/", "https://b.example/x"), (("t", "h1"),))),
        replace(base, limits=RunLimits(max_total_runs=9, overlap=Overlap.ALLOW_ALL)),
        replace(base, retry=RetryPolicy(max_attempts=7, initial_delay_s=0.25, jitter=0.0)),
        replace(
            base,
            timing=Timing(
                TimingKind.CRON,
                cron="*/5 * * * * *",
                dialect=CronDialect.SECONDS6,
                timezone="Asia/Tokyo",
                start_ms=1_700_000_000_000,
                end_ms=1_800_000_000_000,
                jitter_s=30,
            ),
        ),
        replace(base, timing=Timing(TimingKind.INTERVAL, interval_s=90)),
        replace(base, timing=Timing(TimingKind.RUN_AT, run_at_ms=1_750_000_000_500)),
    ]


def test_codec_schedules_round_trip_through_their_messages() -> None:
    for schedule in _variants():
        message = schedule_to_proto(schedule, [1_750_000_000_000, 1_750_000_060_000])
        assert [t.ToMilliseconds() for t in message.next_fire_times] == [
            1_750_000_000_000,
            1_750_000_060_000,
        ]
        assert schedule_from_proto(message) == schedule
        for kind in ("created", "updated", "paused", "resumed", "deleted"):
            decoded = schedule_from_event(schedule_event(kind, schedule, note="n"))
            assert decoded == (schedule, kind == "deleted")


def test_codec_events_of_two_types_with_one_body_decode_apart() -> None:
    schedule = schedule_record("same-body", 2)
    body = schedule_to_proto(schedule)
    updated = events_pb2.ScheduleUpdated(schedule=body)
    deleted = events_pb2.ScheduleDeleted(schedule=body)
    assert updated.SerializeToString() == deleted.SerializeToString()  # the same bytes
    for _ in range(2):  # decoded afresh, then remembered
        assert schedule_from_event(updated) == (schedule, False)
        assert schedule_from_event(deleted) == (schedule, True)
    assert schedule_from_event(events_pb2.RunRequested(run_id="r")) is None
