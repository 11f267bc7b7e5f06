"""A fire's run request: every field as the schedule says, whatever policies it shares."""

from __future__ import annotations

from dataclasses import replace

from campaign_common import retry_policy
from campaign_common.retry_policy import RetryPolicy
from campaign_common.runs.limits import Overlap, RunLimits, limits_to_proto
from campaign_common.timeutil import ms_to_timestamp
from campaigns.v1 import events_pb2, run_pb2, schedule_pb2
from scheduler_svc.model import Scrape
from scheduler_svc.run_request import run_request
from tests.scheduler_svc.records import schedule_record


def _field_by_field(schedule_id: str, limits: RunLimits, retry: RetryPolicy, scrape: Scrape):  # type: ignore[no-untyped-def]
    return events_pb2.RunRequested(
        run_id=f"{schedule_id}:5000",
        schedule_id=schedule_id,
        campaign_id=f"c-{schedule_id}",
        scheduled_for=ms_to_timestamp(5000),
        attempt=1,
        trigger=run_pb2.RUN_TRIGGER_SCHEDULED,
        scrape=schedule_pb2.ScrapeSpec(urls=list(scrape.urls), selectors=dict(scrape.selectors)),
        limits=limits_to_proto(limits),
        retry_policy=retry_policy.to_proto(retry),
    )


def test_run_request_carries_each_schedules_own_policies_and_scrape() -> None:
    scrape = Scrape(urls=("http://a.example/", "http://b.example/é"), selectors=(("t", "h1"),))
    policies = [
        (RunLimits(), RetryPolicy()),
        (RunLimits(overlap=Overlap.BUFFER_ONE, max_total_runs=7, run_timeout_s=30), RetryPolicy()),
        (RunLimits(), RetryPolicy(max_attempts=5, initial_delay_s=1.5, jitter=0)),
        (RunLimits(), RetryPolicy()),  # the first pair again: its encoding is reused
    ]
    for n, (limits, retry) in enumerate(policies):
        schedule = replace(schedule_record(f"s{n}"), limits=limits, retry=retry, scrape=scrape)
        request = run_request(schedule, f"s{n}:5000", 5000, run_pb2.RUN_TRIGGER_SCHEDULED)
        assert request.requested_at.ToMilliseconds() > 0
        request.ClearField("requested_at")
        assert request == _field_by_field(f"s{n}", limits, retry, scrape)
