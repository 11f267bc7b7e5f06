"""The REST response documents: pydantic models of every body the gateway returns (camelCase
on the wire), so OpenAPI describes exactly what it answers."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from gateway.models import (
    CronDialectName,
    OverlapName,
    RunStateName,
    RunTriggerName,
    ScheduleStateName,
)


class ResponseModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_alias=True, serialize_by_alias=True, frozen=True
    )


# RFC 3339 UTC with milliseconds, e.g. "2026-01-05T09:00:00.000Z".
DateTime = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


class ScheduleSpecOut(ResponseModel):
    cron: str | None
    cron_dialect: CronDialectName | None = Field(description="null unless cron is set")
    interval_seconds: int | None
    run_at: DateTime | None = Field(description="RFC 3339 UTC")
    timezone: str
    start_time: DateTime | None = Field(None, description="RFC 3339 UTC; null: no bound")
    end_time: DateTime | None = Field(None, description="RFC 3339 UTC; null: no bound")
    jitter_seconds: int = Field(description="0: no jitter")


class ScrapeSpecOut(ResponseModel):
    urls: list[str]
    selectors: dict[str, str]


class RunLimitsOut(ResponseModel):
    """0 = no limit (or the service's default)."""

    overlap: OverlapName
    max_runs_per_window: int
    window_seconds: int
    max_total_runs: int
    start_deadline_seconds: int
    run_timeout_seconds: int
    max_pages: int
    max_bytes: int
    per_host_concurrency: int
    per_host_delay_ms: int
    pause_after_failures: int
    catch_up_window_seconds: int = Field(description="0: the service's default")


class RetryPolicyOut(ResponseModel):
    """The effective policy: defaults filled in."""

    max_attempts: int
    initial_delay_seconds: float
    max_delay_seconds: float
    multiplier: float
    jitter: float


class ScheduleOut(ResponseModel):
    schedule_id: str
    campaign_id: str
    name: str
    schedule: ScheduleSpecOut
    scrape: ScrapeSpecOut
    limits: RunLimitsOut
    retry_policy: RetryPolicyOut
    version: int = Field(description="1 after creation, +1 per accepted change")
    state: ScheduleStateName
    next_fire_times: list[DateTime] = Field(
        description="up to 5, RFC 3339 UTC, when runs will be requested (jitter included); "
        "empty unless ACTIVE"
    )
    paused_note: str | None
    created_at: DateTime | None
    updated_at: DateTime | None


class ScheduleList(ResponseModel):
    schedules: list[ScheduleOut]
    next_page_token: str = Field(description="pass as pageToken for the next page; empty at end")


class TriggerOut(ResponseModel):
    run_id: str


class RunOut(ResponseModel):
    run_id: str
    schedule_id: str
    campaign_id: str
    state: RunStateName
    attempt: int
    scheduled_for: DateTime | None = Field(description="nominal fire time (manual: when accepted)")
    started_at: DateTime | None
    finished_at: DateTime | None
    next_attempt_at: DateTime | None = Field(
        description="RETRY_SCHEDULED after a failed attempt: when the next attempt is due"
    )
    error: str | None = Field(description="why the run failed or was skipped")
    trigger: RunTriggerName


class RunList(ResponseModel):
    runs: list[RunOut] = Field(description="newest first")
    next_page_token: str


class DeadLetterOut(ResponseModel):
    id: str = Field(description="dead-letter id, for :retry and DELETE")
    run_id: str
    schedule_id: str
    campaign_id: str
    attempt: int = Field(description="the last attempt, the one that failed")
    error: str | None = Field(description="the last error")
    deliveries: int = Field(description="deliveries of the last attempt's entry")
    dead_lettered_at: DateTime | None


class DeadLetterList(ResponseModel):
    dead_letters: list[DeadLetterOut] = Field(description="newest first")
    next_page_token: str


class RetryOut(ResponseModel):
    run_id: str
    attempt: int = Field(description="the new attempt's number")


class ResultOut(ResponseModel):
    run_id: str
    url: str
    status_code: int
    fields: dict[str, str | None] = Field(description="field name -> text, null if no match")
    fetched_at: DateTime | None


class ResultList(ResponseModel):
    results: list[ResultOut] = Field(description="newest first")
    next_page_token: str = Field(description="pass as pageToken for the next page; empty at end")


class FieldViolationOut(ResponseModel):
    field: str = Field(description="REST path of the bad field, e.g. schedule.cron")
    description: str


class ErrorOut(ResponseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_alias=True,
        serialize_by_alias=True,
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "code": "INVALID_ARGUMENT",
                    "message": "invalid request: fix schedule.cron (see field violations)",
                    "fieldViolations": [
                        {
                            "field": "schedule.cron",
                            "description": "invalid cron expression: expected 5 fields ...",
                        }
                    ],
                }
            ]
        },
    )

    code: str = Field(description="canonical gRPC code name", examples=["INVALID_ARGUMENT"])
    message: str
    field_violations: list[FieldViolationOut]


class HealthOut(ResponseModel):
    status: str
