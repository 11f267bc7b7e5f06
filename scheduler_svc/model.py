"""The scheduler's domain records: schedules, their timing and their scrape, as frozen values."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from campaign_common.retry_policy import DEFAULT as DEFAULT_RETRY
from campaign_common.retry_policy import RetryPolicy
from campaign_common.runs.limits import RunLimits


class ScheduleState(StrEnum):
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"


class CronDialect(StrEnum):
    POSIX5 = "POSIX5"  # minute hour day-of-month month day-of-week
    SECONDS6 = "SECONDS6"  # second, then the five POSIX fields


class TimingKind(StrEnum):
    CRON = "CRON"
    INTERVAL = "INTERVAL"
    RUN_AT = "RUN_AT"


@dataclass(frozen=True, slots=True)
class Timing:
    """When a schedule fires: ``kind`` says which one of cron, interval_s, run_at_ms counts."""

    kind: TimingKind
    cron: str = ""
    interval_s: int = 0
    run_at_ms: int = 0
    timezone: str = "UTC"
    start_ms: int = 0  # no fire before (0: no bound)
    end_ms: int = 0  # no fire after (0: no bound)
    jitter_s: int = 0  # each fire runs a deterministic offset in [0, jitter_s) late
    dialect: CronDialect = CronDialect.POSIX5


@dataclass(frozen=True, slots=True)
class Scrape:
    urls: tuple[str, ...]
    selectors: tuple[tuple[str, str], ...]  # (field name, CSS selector), sorted by name


@dataclass(frozen=True, slots=True)
class Schedule:
    schedule_id: str
    campaign_id: str
    name: str
    timing: Timing
    scrape: Scrape
    version: int
    state: ScheduleState
    created_at_ms: int
    updated_at_ms: int
    paused_note: str = ""
    limits: RunLimits = field(default_factory=RunLimits)
    retry: RetryPolicy = DEFAULT_RETRY  # the effective policy (defaults filled in)

    def catch_up_window_ms(self, default_ms: int) -> int:
        """How late a fire may still run: the schedule's own window, else the service's."""
        return self.limits.catch_up_window_s * 1000 or default_ms

    def evolve(self, now_ms: int, **changes: object) -> Schedule:
        """The next version of this schedule with ``changes`` applied."""
        return replace(self, version=self.version + 1, updated_at_ms=now_ms, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class NewSchedule:
    """A create command as received, before validation."""

    campaign_id: str
    name: str
    timing: Timing | None
    scrape: Scrape
    limits: RunLimits = field(default_factory=RunLimits)
    retry: RetryPolicy = DEFAULT_RETRY
    request_id: str = ""  # idempotent create: a retry answers the first call's schedule
