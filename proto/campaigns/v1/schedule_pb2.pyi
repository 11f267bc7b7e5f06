import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CronDialect(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CRON_DIALECT_UNSPECIFIED: _ClassVar[CronDialect]
    CRON_DIALECT_POSIX5: _ClassVar[CronDialect]
    CRON_DIALECT_SECONDS6: _ClassVar[CronDialect]

class OverlapPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OVERLAP_POLICY_UNSPECIFIED: _ClassVar[OverlapPolicy]
    OVERLAP_POLICY_SKIP: _ClassVar[OverlapPolicy]
    OVERLAP_POLICY_BUFFER_ONE: _ClassVar[OverlapPolicy]
    OVERLAP_POLICY_ALLOW_ALL: _ClassVar[OverlapPolicy]

class ScheduleState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCHEDULE_STATE_UNSPECIFIED: _ClassVar[ScheduleState]
    SCHEDULE_STATE_ACTIVE: _ClassVar[ScheduleState]
    SCHEDULE_STATE_PAUSED: _ClassVar[ScheduleState]
    SCHEDULE_STATE_COMPLETED: _ClassVar[ScheduleState]
CRON_DIALECT_UNSPECIFIED: CronDialect
CRON_DIALECT_POSIX5: CronDialect
CRON_DIALECT_SECONDS6: CronDialect
OVERLAP_POLICY_UNSPECIFIED: OverlapPolicy
OVERLAP_POLICY_SKIP: OverlapPolicy
OVERLAP_POLICY_BUFFER_ONE: OverlapPolicy
OVERLAP_POLICY_ALLOW_ALL: OverlapPolicy
SCHEDULE_STATE_UNSPECIFIED: ScheduleState
SCHEDULE_STATE_ACTIVE: ScheduleState
SCHEDULE_STATE_PAUSED: ScheduleState
SCHEDULE_STATE_COMPLETED: ScheduleState

class ScheduleSpec(_message.Message):
    __slots__ = ("cron", "interval_seconds", "run_at", "timezone", "start_time", "end_time", "jitter_seconds", "cron_dialect")
    CRON_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RUN_AT_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    JITTER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CRON_DIALECT_FIELD_NUMBER: _ClassVar[int]
    cron: str
    interval_seconds: int
    run_at: _timestamp_pb2.Timestamp
    timezone: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    jitter_seconds: int
    cron_dialect: CronDialect
    def __init__(self, cron: _Optional[str] = ..., interval_seconds: _Optional[int] = ..., run_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., timezone: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., jitter_seconds: _Optional[int] = ..., cron_dialect: _Optional[_Union[CronDialect, str]] = ...) -> None: ...

class ScrapeSpec(_message.Message):
    __slots__ = ("urls", "selectors")
    class SelectorsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    URLS_FIELD_NUMBER: _ClassVar[int]
    SELECTORS_FIELD_NUMBER: _ClassVar[int]
    urls: _containers.RepeatedScalarFieldContainer[str]
    selectors: _containers.ScalarMap[str, str]
    def __init__(self, urls: _Optional[_Iterable[str]] = ..., selectors: _Optional[_Mapping[str, str]] = ...) -> None: ...

class RunLimits(_message.Message):
    __slots__ = ("overlap", "max_runs_per_window", "window_seconds", "max_total_runs", "start_deadline_seconds", "run_timeout_seconds", "max_pages", "max_bytes", "per_host_concurrency", "per_host_delay_ms", "pause_after_failures", "catch_up_window_seconds")
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    MAX_RUNS_PER_WINDOW_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_TOTAL_RUNS_FIELD_NUMBER: _ClassVar[int]
    START_DEADLINE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RUN_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_PAGES_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    PER_HOST_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    PER_HOST_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    PAUSE_AFTER_FAILURES_FIELD_NUMBER: _ClassVar[int]
    CATCH_UP_WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    overlap: OverlapPolicy
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
    catch_up_window_seconds: int
    def __init__(self, overlap: _Optional[_Union[OverlapPolicy, str]] = ..., max_runs_per_window: _Optional[int] = ..., window_seconds: _Optional[int] = ..., max_total_runs: _Optional[int] = ..., start_deadline_seconds: _Optional[int] = ..., run_timeout_seconds: _Optional[int] = ..., max_pages: _Optional[int] = ..., max_bytes: _Optional[int] = ..., per_host_concurrency: _Optional[int] = ..., per_host_delay_ms: _Optional[int] = ..., pause_after_failures: _Optional[int] = ..., catch_up_window_seconds: _Optional[int] = ...) -> None: ...

class RetryPolicy(_message.Message):
    __slots__ = ("max_attempts", "initial_delay_seconds", "max_delay_seconds", "multiplier", "jitter")
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    INITIAL_DELAY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_DELAY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    JITTER_FIELD_NUMBER: _ClassVar[int]
    max_attempts: int
    initial_delay_seconds: float
    max_delay_seconds: float
    multiplier: float
    jitter: float
    def __init__(self, max_attempts: _Optional[int] = ..., initial_delay_seconds: _Optional[float] = ..., max_delay_seconds: _Optional[float] = ..., multiplier: _Optional[float] = ..., jitter: _Optional[float] = ...) -> None: ...

class Schedule(_message.Message):
    __slots__ = ("schedule_id", "campaign_id", "name", "spec", "scrape", "version", "state", "paused_note", "created_at", "updated_at", "next_fire_times", "limits", "retry_policy")
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    SCRAPE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAUSED_NOTE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIRE_TIMES_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    RETRY_POLICY_FIELD_NUMBER: _ClassVar[int]
    schedule_id: str
    campaign_id: str
    name: str
    spec: ScheduleSpec
    scrape: ScrapeSpec
    version: int
    state: ScheduleState
    paused_note: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    next_fire_times: _containers.RepeatedCompositeFieldContainer[_timestamp_pb2.Timestamp]
    limits: RunLimits
    retry_policy: RetryPolicy
    def __init__(self, schedule_id: _Optional[str] = ..., campaign_id: _Optional[str] = ..., name: _Optional[str] = ..., spec: _Optional[_Union[ScheduleSpec, _Mapping]] = ..., scrape: _Optional[_Union[ScrapeSpec, _Mapping]] = ..., version: _Optional[int] = ..., state: _Optional[_Union[ScheduleState, str]] = ..., paused_note: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_fire_times: _Optional[_Iterable[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]]] = ..., limits: _Optional[_Union[RunLimits, _Mapping]] = ..., retry_policy: _Optional[_Union[RetryPolicy, _Mapping]] = ...) -> None: ...
