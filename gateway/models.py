"""The REST request documents: pydantic models of every request body (camelCase on the wire).

Request models check shape and JSON types (``extra="forbid"``: an unknown field is an error),
that every string is valid Unicode (a lone UTF-16 surrogate such as ``"\\ud800"`` is legal
JSON but cannot be sent on: `Text`), and that whole numbers written as ``3600.0`` count as the
integers they are (`WholeNumber`). The length limits shown here are the scheduler's, stated
for clients; what the values mean (cron syntax, time zones, URLs) is the scheduler's to judge.
The response documents are `gateway.responses`.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import available_timezones

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

from campaign_common import retry_policy

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


UNICODE = AfterValidator(_valid_unicode)


def text(max_length: int, **documented: Any) -> Any:
    """Metadata of a string (``Annotated[str, text(...), UNICODE]``) of at most ``max_length``
    characters (checked here: an oversized value never travels on); ``documented`` constraints
    (``pattern``, ``minLength``, ``enum``) are shown in OpenAPI and judged by the scheduler,
    which names every bad field at once, with a message that says what is wrong."""
    return Field(max_length=max_length, json_schema_extra=documented)


# Integers that fit the proto field they are copied into (range checks are the scheduler's).
Int32 = Annotated[int, Field(ge=-(2**31), le=INT32_MAX)]
# The range constraint comes before the validator, so OpenAPI shows it as minimum/maximum.
StrictInt32 = Annotated[StrictInt, Field(ge=-(2**31), le=INT32_MAX), BeforeValidator(_whole)]
StrictInt64 = Annotated[StrictInt, Field(ge=-(2**63), le=INT64_MAX), BeforeValidator(_whole)]


WHOLE = BeforeValidator(_whole)


def whole(low: int, high: int, *, int32: bool = False) -> Any:
    """Metadata of a whole number (``Annotated[StrictInt, whole(...), WHOLE]``: ``3600.0``
    counts) shown with its range [low, high] in OpenAPI.

    The range is the scheduler's to judge (every bad field in one answer); tests keep the two
    equal, so a client that keeps to the OpenAPI document is never refused a value it allows.
    Here only the range of the proto field (int64, or ``int32``) is checked.
    """
    shown: dict[str, Any] = {"minimum": low, "maximum": high}
    bits = 31 if int32 else 63
    return Field(ge=-(2**bits), le=2**bits - 1, json_schema_extra=shown)


def decimal(low: float, high: float) -> Any:
    """Metadata of a number (``Annotated[StrictFloat, decimal(...)]``) shown with its range in
    OpenAPI (judged by the scheduler, as `whole`)."""
    return Field(json_schema_extra={"minimum": low, "maximum": high})


@cache
def iana_zones() -> list[str]:
    return sorted(available_timezones())


# What the scheduler accepts, stated for clients (scheduler_svc.validation, .urls, .cron).
DAY_S = 24 * 3600
MAX_INTERVAL_S = 366 * DAY_S
CAMPAIGN_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
FIELD_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_PORT = r"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
# ASCII host names and IPv4 (the scheduler also takes IPv6 in brackets and IDNA names).
URL_PATTERN = (
    rf"^https?://{_LABEL}(?:\.{_LABEL}){{0,8}}(?::{_PORT})?"
    r"(?:/[A-Za-z0-9._~%!$&'()*+,;=:@/-]*)?(?:\?[A-Za-z0-9._~%!$&'()*+,;=:@/?-]*)?$"
)
LIMIT_RANGES = {  # REST name -> maximum; 0 = no limit (or the default)
    "maxRunsPerWindow": 1_000_000,
    "windowSeconds": 366 * DAY_S,
    "maxTotalRuns": 1_000_000_000,
    "startDeadlineSeconds": 7 * DAY_S,
    "runTimeoutSeconds": DAY_S,
    "maxPages": 100_000,
    "maxBytes": 10 * 1024**3,
    "perHostConcurrency": 100,
    "perHostDelayMs": 3_600_000,
    "pauseAfterFailures": 1000,
    "catchUpWindowSeconds": 12 * 3600,
}


def _request_schema(schema: dict[str, Any], cls: type) -> None:
    """Request properties are optional by being absent: OpenAPI shows no ``null`` branch
    (a ``null`` is still read as absent), so generated clients get plain optional fields; a
    model's ``schema_one_of`` becomes its ``oneOf``."""
    one_of = getattr(cls, "schema_one_of", None)
    if one_of:
        schema["oneOf"] = one_of
    examples = getattr(cls, "schema_examples", None)
    if examples:
        schema["examples"] = examples
    for prop in schema.get("properties", {}).values():
        branches = prop.get("anyOf")
        if branches and {"type": "null"} in branches and len(branches) == 2:
            [kept] = [branch for branch in branches if branch != {"type": "null"}]
            del prop["anyOf"]
            prop.update(kept)
            if prop.get("default", 0) is None:
                del prop["default"]


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


class RequestModel(BaseModel):
    """camelCase only, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
        extra="forbid",
        frozen=True,
        json_schema_extra=_request_schema,
    )


# --- requests -------------------------------------------------------------------------------------


# Every string: no control characters (C0, DEL, C1); a pause note may hold tab and newline.
_PRINTABLE = r"^[^\u0000-\u001f\u007f-\u009f]*$"
_NOTE = r"^[^\u0000-\u0008\u000b-\u001f\u007f-\u009f]*$"
_NON_BLANK = (
    r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
)


class ScheduleSpecIn(RequestModel):
    """When the campaign runs: exactly one of cron, intervalSeconds or runAt."""

    # OpenAPI: the timing kind as a oneOf (exactly one of the three is present).
    schema_one_of: ClassVar[list[dict[str, Any]]] = [
        {"title": "cron", "required": ["cron"]},
        {"title": "interval", "required": ["intervalSeconds"]},
        {"title": "one-shot", "required": ["runAt"]},
    ]

    cron: Annotated[str, text(200, minLength=1, pattern=_NON_BLANK), UNICODE] | None = Field(
        None,
        description="cron in the time zone, in the cronDialect (POSIX 5-field by default: "
        "minute hour day-of-month month day-of-week, Sunday = 0 or 7), or @yearly, @annually, "
        "@monthly, @weekly, @daily, @midnight, @hourly; refused if it can never fire",
        examples=["0 9 * * 1-5"],
    )
    cron_dialect: CronDialectName | None = Field(
        None,
        description="posix5 (default): 5 fields; seconds6: a leading second field (0-59), "
        "then the 5 POSIX fields",
        examples=["posix5"],
    )
    interval_seconds: Annotated[StrictInt, whole(1, MAX_INTERVAL_S), WHOLE] | None = Field(
        None, description="fires at creation + k * interval, k >= 1", examples=[3600]
    )
    run_at: AwareDatetime | None = Field(
        None,
        description="one run at this time (with an offset; not in the past)",
        examples=["2026-12-01T09:00:00Z"],
    )
    timezone: Annotated[str, text(64, enum=iana_zones()), UNICODE] | None = Field(
        None, description='IANA time zone name; default "UTC"', examples=["Europe/Berlin"]
    )
    start_time: AwareDatetime | None = Field(
        None, description="no fire before this time", examples=["2026-12-01T00:00:00Z"]
    )
    end_time: AwareDatetime | None = Field(
        None,
        description="no fire after this time (in the future, after startTime); then the "
        "schedule completes",
        examples=["2027-12-01T00:00:00Z"],
    )
    jitter_seconds: Annotated[StrictInt, whole(0, MAX_JITTER_S), WHOLE] | None = Field(
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


SelectorName = Annotated[Text, Field(json_schema_extra={"pattern": FIELD_NAME_PATTERN})]
Selector = Annotated[str, text(1000, minLength=1, pattern=_NON_BLANK), UNICODE]


class ScrapeSpecIn(RequestModel):
    urls: list[Annotated[str, text(2048, pattern=URL_PATTERN), UNICODE]] = Field(
        min_length=1,
        max_length=100,
        description="1-100 absolute http(s) URLs, without credentials (user:password@)",
        examples=[["https://example.com/offers"]],
    )
    selectors: dict[SelectorName, Selector] = Field(
        default_factory=dict,
        max_length=50,
        json_schema_extra={"additionalProperties": False},
        description="field name -> CSS selector (at most 50)",
        examples=[{"title": "h1", "price": ".price"}],
    )


class RunLimitsIn(RequestModel):
    """Execution limits of the schedule's runs; absent or 0 = no limit (or the default)."""

    overlap: OverlapName | None = Field(
        None,
        description="a run due while the previous one holds the lock: SKIP (default), "
        "BUFFER_ONE or ALLOW_ALL",
        examples=["SKIP"],
    )
    max_runs_per_window: (
        Annotated[StrictInt, whole(0, LIMIT_RANGES["maxRunsPerWindow"], int32=True), WHOLE] | None
    ) = Field(None, description="with windowSeconds (both or neither)")
    window_seconds: Annotated[StrictInt, whole(0, LIMIT_RANGES["windowSeconds"]), WHOLE] | None = (
        Field(None, description="with maxRunsPerWindow (both or neither)")
    )
    max_total_runs: Annotated[StrictInt, whole(0, LIMIT_RANGES["maxTotalRuns"]), WHOLE] | None = (
        Field(None, description="then the schedule completes")
    )
    start_deadline_seconds: (
        Annotated[StrictInt, whole(0, LIMIT_RANGES["startDeadlineSeconds"]), WHOLE] | None
    ) = None
    run_timeout_seconds: (
        Annotated[StrictInt, whole(0, LIMIT_RANGES["runTimeoutSeconds"]), WHOLE] | None
    ) = None
    max_pages: (
        Annotated[StrictInt, whole(0, LIMIT_RANGES["maxPages"], int32=True), WHOLE] | None
    ) = None
    max_bytes: Annotated[StrictInt, whole(0, LIMIT_RANGES["maxBytes"]), WHOLE] | None = None
    per_host_concurrency: (
        Annotated[StrictInt, whole(0, LIMIT_RANGES["perHostConcurrency"], int32=True), WHOLE] | None
    ) = None
    per_host_delay_ms: (
        Annotated[StrictInt, whole(0, LIMIT_RANGES["perHostDelayMs"]), WHOLE] | None
    ) = None
    pause_after_failures: (
        Annotated[StrictInt, whole(0, LIMIT_RANGES["pauseAfterFailures"], int32=True), WHOLE] | None
    ) = Field(None, description="pause the schedule after this many consecutive failed runs")
    catch_up_window_seconds: (
        Annotated[StrictInt, whole(0, LIMIT_RANGES["catchUpWindowSeconds"]), WHOLE] | None
    ) = Field(
        None,
        description="a fire missed (no scheduler ran, or it fell behind) still runs if at "
        "most this late; older ones are recorded as SKIPPED runs; 0 or absent: the "
        "service's default (SCHEDULER_CATCH_UP_WINDOW_S, 60 s)",
    )


_MAX_DELAY_S = retry_policy.MAX_DELAY_LIMIT_S


class RetryPolicyIn(RequestModel):
    """How failed attempts of a run are retried; absent or 0 = the default shown."""

    max_attempts: (
        Annotated[StrictInt, whole(0, retry_policy.MAX_ATTEMPTS_LIMIT, int32=True), WHOLE] | None
    ) = Field(
        None,
        description="attempts in total, the first included (1: never retried); default 3",
        examples=[3],
    )
    initial_delay_seconds: Annotated[StrictFloat, decimal(0, _MAX_DELAY_S)] | None = Field(
        None, description="delay before the second attempt; default 5", examples=[5.0]
    )
    max_delay_seconds: Annotated[StrictFloat, decimal(0, _MAX_DELAY_S)] | None = Field(
        None,
        description="cap on any delay, >= initialDelaySeconds; default 300",
        examples=[300.0],
    )
    multiplier: Annotated[StrictFloat, decimal(1, retry_policy.MAX_MULTIPLIER)] | None = Field(
        None, description="factor between consecutive delays (>= 1); default 2", examples=[2.0]
    )
    jitter: Annotated[StrictFloat, decimal(0, 1)] | None = Field(
        None,
        description="each delay is scaled by a random factor in [1 - jitter, 1]; 0 to 1, "
        "default 0.2 (0 is kept: no jitter)",
        examples=[0.2],
    )


_EXAMPLE_BODY: dict[str, Any] = {
    "name": "Spring leads",
    "schedule": {"cron": "0 9 * * 1-5", "timezone": "Europe/Berlin", "jitterSeconds": 60},
    "scrape": {"urls": ["https://example.com/offers"], "selectors": {"title": "h1"}},
    "limits": {"overlap": "SKIP", "maxRunsPerWindow": 10, "windowSeconds": 3600},
    "retryPolicy": {"maxAttempts": 3},
}


class UpdateScheduleBody(RequestModel):
    """What a schedule does and when: the whole of it (PUT replaces; absent = the default)."""

    schema_examples: ClassVar[list[dict[str, Any]]] = [_EXAMPLE_BODY]

    name: Annotated[str, text(200, minLength=1, pattern=_NON_BLANK), UNICODE] = Field(
        description="1-200 characters, not only white space",
        examples=["Spring leads"],
    )
    schedule: ScheduleSpecIn
    scrape: ScrapeSpecIn
    limits: RunLimitsIn | None = None
    retry_policy: RetryPolicyIn | None = None


class AddScheduledCampaignBody(UpdateScheduleBody):
    schema_examples: ClassVar[list[dict[str, Any]]] = [
        {"campaignId": "spring-leads", **_EXAMPLE_BODY}
    ]

    campaign_id: Annotated[str, text(63, pattern=CAMPAIGN_ID_PATTERN), UNICODE] | None = Field(
        None, description="generated when absent", examples=["spring-leads"]
    )
    request_id: (
        Annotated[
            str,
            Field(min_length=1, max_length=128, json_schema_extra={"pattern": _PRINTABLE}),
            UNICODE,
        ]
        | None
    ) = Field(
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
    note: Annotated[str, text(1000, pattern=_NOTE), UNICODE] | None = Field(
        None,
        description="why the schedule is paused, shown on reads; absent or empty keeps the "
        "current note when the schedule is paused already",
        examples=["holiday season"],
    )
