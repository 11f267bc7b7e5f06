"""proto <-> REST JSON: names, enums, times, nulls, field paths."""

from __future__ import annotations

import typing
from datetime import UTC, datetime, timedelta, timezone

import pytest

from campaign_common.timeutil import ms_to_timestamp
from campaigns.v1 import run_pb2, schedule_pb2
from campaigns.v1 import scheduler_service_pb2 as api
from gateway.convert import (
    add_request_to_proto,
    enum_name,
    json_field_path,
    result_to_json,
    run_to_json,
    schedule_to_json,
)
from gateway.models import (
    AddScheduledCampaignBody,
    OverlapName,
    RunStateName,
    RunTriggerName,
    ScheduleStateName,
)
from gateway.responses import ResultOut, RunOut, ScheduleOut
from tests.gateway.stub import sample_schedule

MONDAY_9_UTC_MS = 1_767_603_600_000  # 2026-01-05T09:00:00Z


@pytest.mark.parametrize(
    ("path", "request_type", "expected"),
    [
        ("schedule.interval_seconds", api.AddScheduledCampaignRequest, "schedule.intervalSeconds"),
        ("schedule.run_at", api.AddScheduledCampaignRequest, "schedule.runAt"),
        ("scrape.urls[2]", api.AddScheduledCampaignRequest, "scrape.urls[2]"),
        ("scrape.selectors.my_field", api.AddScheduledCampaignRequest, "scrape.selectors.my_field"),
        ("scrape.selectors.a.b_c", api.AddScheduledCampaignRequest, "scrape.selectors.a.b_c"),
        ("campaign_id", api.AddScheduledCampaignRequest, "campaignId"),
        ("schedule", api.AddScheduledCampaignRequest, "schedule"),
        ("page_size", api.ListRunsRequest, "pageSize"),
        ("page_token", api.ListSchedulesRequest, "pageToken"),
        ("retry_policy.max_attempts", api.AddScheduledCampaignRequest, "retryPolicy.maxAttempts"),
        ("retry_policy.jitter", api.AddScheduledCampaignRequest, "retryPolicy.jitter"),
        ("not_a_field.some_thing[0]", api.GetRunRequest, "notAField.someThing[0]"),
        ("", api.GetRunRequest, ""),
    ],
)
def test_json_field_path_camel_cases_proto_paths(
    path: str, request_type: type, expected: str
) -> None:
    assert json_field_path(path, request_type()) == expected


def test_json_field_path_without_request_converts_mechanically() -> None:
    assert json_field_path("schedule.interval_seconds", None) == "schedule.intervalSeconds"


def test_schedule_to_json_uses_rest_names_and_rfc3339() -> None:
    schedule = sample_schedule("abc")
    schedule.next_fire_times.append(ms_to_timestamp(MONDAY_9_UTC_MS))
    assert schedule_to_json(schedule) == {
        "scheduleId": "abc",
        "campaignId": "spring-leads",
        "name": "Spring leads",
        "schedule": {
            "cron": "0 9 * * 1",
            "cronDialect": "posix5",
            "intervalSeconds": None,
            "runAt": None,
            "timezone": "Europe/Berlin",
            "startTime": None,
            "endTime": None,
            "jitterSeconds": 0,
        },
        "scrape": {"urls": ["http://example.test/"], "selectors": {"t": "h1"}},
        "limits": {
            "overlap": "BUFFER_ONE",
            "maxRunsPerWindow": 2,
            "windowSeconds": 60,
            "maxTotalRuns": 0,
            "startDeadlineSeconds": 0,
            "runTimeoutSeconds": 0,
            "maxPages": 0,
            "maxBytes": 0,
            "perHostConcurrency": 0,
            "perHostDelayMs": 0,
            "pauseAfterFailures": 0,
            "catchUpWindowSeconds": 0,
        },
        "retryPolicy": {  # none in the message (an older scheduler): the defaults
            "maxAttempts": 3,
            "initialDelaySeconds": 5.0,
            "maxDelaySeconds": 300.0,
            "multiplier": 2.0,
            "jitter": 0.2,
        },
        "version": 1,
        "state": "ACTIVE",
        "nextFireTimes": ["2026-01-05T09:00:00.000Z"],
        "pausedNote": None,
        "createdAt": "2026-01-01T09:00:00.000Z",
        "updatedAt": "2026-01-01T09:00:00.000Z",
    }


def test_schedule_to_json_unset_times_are_null_and_timezone_defaults_to_utc() -> None:
    schedule = schedule_pb2.Schedule(
        schedule_id="x",
        spec=schedule_pb2.ScheduleSpec(run_at=ms_to_timestamp(MONDAY_9_UTC_MS)),
        state=schedule_pb2.SCHEDULE_STATE_PAUSED,
        paused_note="holiday",
    )
    doc = schedule_to_json(schedule)
    assert doc["schedule"] == {
        "cron": None,
        "cronDialect": None,
        "intervalSeconds": None,
        "runAt": "2026-01-05T09:00:00.000Z",
        "timezone": "UTC",
        "startTime": None,
        "endTime": None,
        "jitterSeconds": 0,
    }
    assert (doc["createdAt"], doc["updatedAt"], doc["nextFireTimes"]) == (None, None, [])
    assert (doc["state"], doc["pausedNote"]) == ("PAUSED", "holiday")
    ScheduleOut.model_validate(doc)


def test_run_to_json_strips_enum_prefixes_and_nulls_unset_fields() -> None:
    run = run_pb2.Run(
        run_id="abc:1767603600000",
        schedule_id="abc",
        campaign_id="spring-leads",
        state=run_pb2.RUN_STATE_REQUESTED,
        attempt=1,
        scheduled_for=ms_to_timestamp(MONDAY_9_UTC_MS),
        trigger=run_pb2.RUN_TRIGGER_MANUAL,
    )
    doc = run_to_json(run)
    assert doc == {
        "runId": "abc:1767603600000",
        "scheduleId": "abc",
        "campaignId": "spring-leads",
        "state": "REQUESTED",
        "attempt": 1,
        "scheduledFor": "2026-01-05T09:00:00.000Z",
        "startedAt": None,
        "finishedAt": None,
        "nextAttemptAt": None,
        "error": None,
        "trigger": "MANUAL",
    }
    RunOut.model_validate(doc)


def test_run_to_json_next_attempt_at_is_rfc3339_when_set() -> None:
    run = run_pb2.Run(
        run_id="abc:1",
        state=run_pb2.RUN_STATE_RETRY_SCHEDULED,
        attempt=2,
        next_attempt_at=ms_to_timestamp(MONDAY_9_UTC_MS),
    )
    doc = run_to_json(run)
    assert (doc["state"], doc["nextAttemptAt"]) == ("RETRY_SCHEDULED", "2026-01-05T09:00:00.000Z")
    RunOut.model_validate(doc)


def test_schedule_to_json_retry_policy_shows_the_values_sent() -> None:
    schedule = sample_schedule("abc")
    schedule.retry_policy.CopyFrom(
        schedule_pb2.RetryPolicy(
            max_attempts=1, initial_delay_seconds=0.5, max_delay_seconds=10, multiplier=1, jitter=0
        )
    )
    doc = schedule_to_json(schedule)
    assert doc["retryPolicy"] == {
        "maxAttempts": 1,
        "initialDelaySeconds": 0.5,
        "maxDelaySeconds": 10.0,
        "multiplier": 1.0,
        "jitter": 0.0,
    }
    ScheduleOut.model_validate(doc)


def test_result_to_json_unmatched_field_is_null() -> None:
    result = run_pb2.ScrapeResult(
        run_id="r",
        url="http://example.test/",
        status_code=200,
        fields=[
            run_pb2.ExtractedField(name="title", text="Sale"),
            run_pb2.ExtractedField(name="x"),
        ],
        fetched_at=ms_to_timestamp(MONDAY_9_UTC_MS),
    )
    doc = result_to_json(result)
    assert doc["fields"] == {"title": "Sale", "x": None}
    assert (doc["statusCode"], doc["fetchedAt"]) == (200, "2026-01-05T09:00:00.000Z")
    ResultOut.model_validate(doc)


def test_enum_name_unknown_value_is_unspecified() -> None:
    assert enum_name(run_pb2.RunState.DESCRIPTOR, 99, "RUN_STATE_") == "UNSPECIFIED"
    assert enum_name(run_pb2.RunState.DESCRIPTOR, 3, "RUN_STATE_") == "SUCCEEDED"


@pytest.mark.parametrize(
    ("literal", "enum", "prefix"),
    [
        (ScheduleStateName, schedule_pb2.ScheduleState, "SCHEDULE_STATE_"),
        (RunStateName, run_pb2.RunState, "RUN_STATE_"),
        (RunTriggerName, run_pb2.RunTrigger, "RUN_TRIGGER_"),
        (OverlapName, schedule_pb2.OverlapPolicy, "OVERLAP_POLICY_"),
    ],
)
def test_enum_names_in_openapi_match_the_proto(literal: object, enum: object, prefix: str) -> None:
    names = {v.name.removeprefix(prefix) for v in enum.DESCRIPTOR.values}  # type: ignore[attr-defined]
    assert set(typing.get_args(literal)) == names


def test_add_request_to_proto_copies_every_field() -> None:
    body = AddScheduledCampaignBody.model_validate(
        {
            "campaignId": "spring-leads",
            "name": "Spring leads",
            "schedule": {"runAt": "2026-12-01T10:00:00+01:00", "timezone": "Europe/Berlin"},
            "scrape": {"urls": ["http://a.test/"], "selectors": {"title": "h1"}},
        }
    )
    message = add_request_to_proto(body)
    assert message.campaign_id == "spring-leads" and message.name == "Spring leads"
    assert message.schedule.WhichOneof("kind") == "run_at"
    assert message.schedule.run_at.ToDatetime(tzinfo=UTC) == datetime(2026, 12, 1, 9, tzinfo=UTC)
    assert message.schedule.timezone == "Europe/Berlin"
    assert list(message.scrape.urls) == ["http://a.test/"]
    assert dict(message.scrape.selectors) == {"title": "h1"}


def test_add_request_to_proto_leaves_absent_fields_empty() -> None:
    body = AddScheduledCampaignBody.model_validate(
        {"name": "n", "schedule": {"intervalSeconds": 30}, "scrape": {"urls": ["http://a.test/"]}}
    )
    message = add_request_to_proto(body)
    assert message.campaign_id == "" and message.schedule.timezone == ""
    assert message.schedule.interval_seconds == 30 and not message.scrape.selectors


def test_add_request_to_proto_with_no_schedule_kind_sends_no_kind() -> None:
    body = AddScheduledCampaignBody.model_validate(
        {"name": "n", "schedule": {"timezone": "UTC"}, "scrape": {"urls": ["http://a.test/"]}}
    )
    assert add_request_to_proto(body).schedule.WhichOneof("kind") is None


def test_add_request_to_proto_run_at_offset_is_normalised_to_utc() -> None:
    body = AddScheduledCampaignBody.model_validate(
        {
            "name": "n",
            "schedule": {"runAt": datetime(2026, 12, 1, 4, tzinfo=timezone(timedelta(hours=-5)))},
            "scrape": {"urls": ["http://a.test/"]},
        }
    )
    run_at = add_request_to_proto(body).schedule.run_at
    assert run_at.ToDatetime(tzinfo=UTC) == datetime(2026, 12, 1, 9, tzinfo=UTC)


def test_add_request_to_proto_copies_limits() -> None:
    body = AddScheduledCampaignBody.model_validate(
        {
            "name": "n",
            "schedule": {"intervalSeconds": 30},
            "scrape": {"urls": ["http://a.test/"]},
            "limits": {
                "overlap": "ALLOW_ALL",
                "maxRunsPerWindow": 3,
                "windowSeconds": 60,
                "maxTotalRuns": 10,
                "startDeadlineSeconds": 5,
                "runTimeoutSeconds": 30,
                "maxPages": 100,
                "maxBytes": 1_000_000,
                "perHostConcurrency": 2,
                "perHostDelayMs": 250,
            },
        }
    )
    assert add_request_to_proto(body).limits == schedule_pb2.RunLimits(
        overlap=schedule_pb2.OVERLAP_POLICY_ALLOW_ALL,
        max_runs_per_window=3,
        window_seconds=60,
        max_total_runs=10,
        start_deadline_seconds=5,
        run_timeout_seconds=30,
        max_pages=100,
        max_bytes=1_000_000,
        per_host_concurrency=2,
        per_host_delay_ms=250,
    )


def test_add_request_to_proto_without_limits_sends_defaults() -> None:
    body = AddScheduledCampaignBody.model_validate(
        {"name": "n", "schedule": {"intervalSeconds": 30}, "scrape": {"urls": ["http://a.test/"]}}
    )
    assert add_request_to_proto(body).limits == schedule_pb2.RunLimits()


def test_add_request_to_proto_copies_the_retry_policy() -> None:
    body = AddScheduledCampaignBody.model_validate(
        {
            "name": "n",
            "schedule": {"intervalSeconds": 30},
            "scrape": {"urls": ["http://a.test/"]},
            "retryPolicy": {
                "maxAttempts": 4,
                "initialDelaySeconds": 1,
                "maxDelaySeconds": 30.5,
                "multiplier": 1.5,
                "jitter": 0,
            },
        }
    )
    message = add_request_to_proto(body).retry_policy
    assert message == schedule_pb2.RetryPolicy(
        max_attempts=4, initial_delay_seconds=1, max_delay_seconds=30.5, multiplier=1.5, jitter=0
    )
    assert message.HasField("jitter")  # an explicit 0 is sent, not left to the default


def test_add_request_to_proto_absent_retry_fields_stay_unset() -> None:
    body = AddScheduledCampaignBody.model_validate(
        {
            "name": "n",
            "schedule": {"intervalSeconds": 30},
            "scrape": {"urls": ["http://a.test/"]},
            "retryPolicy": {"maxAttempts": 2},
        }
    )
    assert add_request_to_proto(body).retry_policy == schedule_pb2.RetryPolicy(max_attempts=2)
    without = AddScheduledCampaignBody.model_validate(
        {"name": "n", "schedule": {"intervalSeconds": 30}, "scrape": {"urls": ["http://a.test/"]}}
    )
    assert add_request_to_proto(without).retry_policy == schedule_pb2.RetryPolicy()
