"""The REST documents: pydantic models of every request and response body (camelCase on the wire).

Request models check shape and JSON types (``extra="forbid"``: an unknown field is an error),
that every string is valid Unicode (a lone UTF-16 surrogate such as ``"\\ud800"`` is legal
JSON but cannot be sent on: `Text`), and that whole numbers written as ``3600.0`` count as the
integers they are (`WholeNumber`). The length limits shown here are the scheduler's, stated
for clients; what the values mean (cron syntax, time zones, URLs) is the scheduler's to judge.
Response models exist so OpenAPI describes exactly what the gateway returns.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    model_validator,
)
from pydantic.alias_generators import to_camel

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


def _whole(value: object) -> object:
    """``3600.0`` is the integer 3600 (JSON has one number type); ``30.5`` stays refused."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _valid_unicode(value: str) -> str:
    """Refuse lone UTF-16 surrogates: they cannot be encoded as UTF-8 for the scheduler."""
    for index, char in enumerate(value):
        if "\ud800" <= char <= "\udfff":
            raise ValueError(
                f"contains a lone UTF-16 surrogate (U+{ord(char):04X}) at position {index}; "
                "send valid Unicode"
            )
    return value


Text = Annotated[str, AfterValidator(_valid_unicode)]
# Integers that fit the proto field they are copied into (range checks are the scheduler's).
Int32 = Annotated[int, Field(ge=-(2**31), le=INT32_MAX)]
StrictInt32 = Annotated[StrictInt, BeforeValidator(_whole), Field(ge=-(2**31), le=INT32_MAX)]
StrictInt64 = Annotated[StrictInt, BeforeValidator(_whole), Field(ge=-(2**63), le=INT64_MAX)]

ScheduleStateName = Literal["UNSPECIFIED", "ACTIVE", "PAUSED", "COMPLETED"]
RunStateName = Literal[
    "UNSPECIFIED",
    "REQUESTED",
    "RUNNING",
    "SUCCEEDED",
    "FAILED",
    "SKIPPED",
    "RETRY_SCHEDULED",
    "DEAD_LETTERED",
]
RunTriggerName = Literal["UNSPECIFIED", "SCHEDULED", "MANUAL"]
OverlapName = Literal["UNSPECIFIED", "SKIP", "BUFFER_ONE", "ALLOW_ALL"]
CronDialectName = Literal["posix5", "seconds6"]
MAX_JITTER_S = 12 * 3600
MAX_CATCH_UP_WINDOW_S = 12 * 3600


class RequestModel(BaseModel):
    """camelCase only, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
        extra="forbid",
        frozen=True,
    )


class ResponseModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_alias=True, serialize_by_alias=True, frozen=True
    )


# --- requests -------------------------------------------------------------------------------------


class ScheduleSpecIn(RequestModel):
    """When the campaign runs: exactly one of cron, intervalSeconds or runAt."""

    cron: Annotated[Text, Field(max_length=200)] | None = Field(
        None,
        description="cron in the time zone, in the cronDialect (POSIX 5-field by default: "
        "minute hour day-of-month month day-of-week, Sunday = 0 or 7), or @yearly, @annually, "
        "@monthly, @weekly, @daily, @midnight, @hourly",
        examples=["0 9 * * 1-5"],
    )
    cron_dialect: CronDialectName | None = Field(
        None,
        description="posix5 (default): 5 fields; seconds6: a leading second field (0-59), "
        "then the 5 POSIX fields",
    )
    interval_seconds: StrictInt64 | None = Field(None, examples=[30])
    run_at: AwareDatetime | None = Field(None, examples=["2026-12-01T09:00:00Z"])
    timezone: Annotated[Text, Field(max_length=64)] | None = Field(
        None, description='IANA time zone name; default "UTC"'
    )
    start_time: AwareDatetime | None = Field(None, description="no fire before this time")
    end_time: AwareDatetime | None = Field(
        None, description="no fire after this time; then the schedule completes"
    )
    jitter_seconds: Annotated[StrictInt64, Field(ge=0, le=MAX_JITTER_S)] | None = Field(
        None,
        description="each fire runs a deterministic offset in [0, jitterSeconds) after its "
        "nominal time (the same on every replica; kept before the next fire); runs keep their "
        "nominal time; nextFireTimes shows the jittered times. 0 or absent: none",
        examples=[60],
    )

    @model_validator(mode="after")
    def _at_most_one_kind(self) -> ScheduleSpecIn:
        # A proto oneof cannot carry two values, so this one check cannot wait for the scheduler.
        kinds = [self.cron, self.interval_seconds, self.run_at]
        if sum(kind is not None for kind in kinds) > 1:
            raise ValueError("set exactly one of cron, intervalSeconds or runAt")
        return self


class ScrapeSpecIn(RequestModel):
    urls: list[Annotated[Text, Field(max_length=2048)]] = Field(
        min_length=1, max_length=100, description="1-100 absolute http(s) URLs, no credentials"
    )
    selectors: dict[Text, Text] = Field(
        default_factory=dict,
        description="field name -> CSS selector",
        examples=[{"title": "h1", "price": ".price"}],
    )


class RunLimitsIn(RequestModel):
    """Execution limits of the schedule's runs; absent or 0 = no limit (or the default)."""

    overlap: OverlapName | None = Field(
        None,
        description="a run due while the previous one holds the lock: SKIP (default), "
        "BUFFER_ONE or ALLOW_ALL",
    )
    max_runs_per_window: StrictInt32 | None = Field(None, description="with windowSeconds")
    window_seconds: StrictInt64 | None = None
    max_total_runs: StrictInt64 | None = Field(None, description="then the schedule completes")
    start_deadline_seconds: StrictInt64 | None = None
    run_timeout_seconds: StrictInt64 | None = None
    max_pages: StrictInt32 | None = None
    max_bytes: StrictInt64 | None = None
    per_host_concurrency: StrictInt32 | None = None
    per_host_delay_ms: StrictInt64 | None = None
    pause_after_failures: StrictInt32 | None = Field(
        None, description="pause the schedule after this many consecutive failed runs"
    )
    catch_up_window_seconds: (
        Annotated[StrictInt64, Field(ge=0, le=MAX_CATCH_UP_WINDOW_S)] | None
    ) = Field(
        None,
        description="a fire missed (no scheduler ran, or it fell behind) still runs if at "
        "most this late; older ones are recorded as SKIPPED runs; 0 or absent: the "
        "service's default (SCHEDULER_CATCH_UP_WINDOW_S, 60 s)",
    )


class RetryPolicyIn(RequestModel):
    """How failed attempts of a run are retried; absent or 0 = the default shown."""

    max_attempts: StrictInt32 | None = Field(
        None, description="attempts in total, the first included (1: never retried); default 3"
    )
    initial_delay_seconds: StrictFloat | None = Field(
        None, description="delay before the second attempt; default 5"
    )
    max_delay_seconds: StrictFloat | None = Field(None, description="cap on any delay; default 300")
    multiplier: StrictFloat | None = Field(
        None, description="factor between consecutive delays (>= 1); default 2"
    )
    jitter: StrictFloat | None = Field(
        None,
        description="each delay is scaled by a random factor in [1 - jitter, 1]; 0 to 1, "
        "default 0.2 (0 is kept: no jitter)",
    )


class UpdateScheduleBody(RequestModel):
    """What a schedule does and when: the whole of it (PUT replaces; absent = the default)."""

    name: Text = Field(max_length=200, description="1-200 characters", examples=["Spring leads"])
    schedule: ScheduleSpecIn
    scrape: ScrapeSpecIn
    limits: RunLimitsIn | None = None
    retry_policy: RetryPolicyIn | None = None


class AddScheduledCampaignBody(UpdateScheduleBody):
    campaign_id: Annotated[Text, Field(max_length=63)] | None = Field(
        None,
        description="[a-z0-9][a-z0-9-]{0,62}; generated when absent",
        examples=["spring-leads"],
    )
    request_id: Annotated[Text, Field(min_length=1, max_length=128)] | None = Field(
        None,
        description="idempotent create (AIP-155; or the Idempotency-Key header): a retry "
        "within an hour answers the schedule the first call created",
        examples=["6f1c2e4a-9b0d-4c43-8a57-1f2e3d4c5b6a"],
    )
    validate_only: bool = Field(
        False,
        description="AIP-163: validate and answer 200 with the schedule this request would "
        "create (its nextFireTimes, an empty scheduleId, version 0) without creating it",
    )


class PauseBody(RequestModel):
    note: Annotated[Text, Field(max_length=1000)] | None = Field(
        None,
        description="why the schedule is paused, shown on reads; absent or empty keeps the "
        "current note when the schedule is paused already",
    )


# --- responses ------------------------------------------------------------------------------------


class ScheduleSpecOut(ResponseModel):
    cron: str | None
    cron_dialect: CronDialectName | None = Field(description="null unless cron is set")
    interval_seconds: int | None
    run_at: str | None = Field(description="RFC 3339 UTC")
    timezone: str
    start_time: str | None = Field(None, description="RFC 3339 UTC; null: no bound")
    end_time: str | None = Field(None, description="RFC 3339 UTC; null: no bound")
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
    next_fire_times: list[str] = Field(
        description="up to 5, RFC 3339 UTC, when runs will be requested (jitter included); "
        "empty unless ACTIVE"
    )
    paused_note: str | None
    created_at: str | None
    updated_at: str | None


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
    scheduled_for: str | None = Field(description="nominal fire time (manual: when accepted)")
    started_at: str | None
    finished_at: str | None
    next_attempt_at: str | None = Field(
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
    dead_lettered_at: str | None


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
    fetched_at: str | None


class ResultList(ResponseModel):
    results: list[ResultOut] = Field(description="newest first")
    next_page_token: str = Field(description="pass as pageToken for the next page; empty at end")


class FieldViolationOut(ResponseModel):
    field: str = Field(description="REST path of the bad field, e.g. schedule.cron")
    description: str


class ErrorOut(ResponseModel):
    code: str = Field(description="canonical gRPC code name", examples=["INVALID_ARGUMENT"])
    message: str
    field_violations: list[FieldViolationOut]


class HealthOut(ResponseModel):
    status: str
