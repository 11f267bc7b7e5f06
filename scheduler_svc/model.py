"""The scheduler's domain records: schedules, their timing and their scrape, as frozen values."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


class ScheduleState(StrEnum):
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"


@dataclass(frozen=True)
class Timing:
    """When a schedule fires: exactly one of cron, interval_s, run_at_ms is set."""

    cron: str = ""
    interval_s: int = 0
    run_at_ms: int = 0
    timezone: str = "UTC"


@dataclass(frozen=True)
class Scrape:
    urls: tuple[str, ...]
    selectors: tuple[tuple[str, str], ...]  # (field name, CSS selector), sorted by name


@dataclass(frozen=True)
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

    def evolve(self, now_ms: int, **changes: object) -> Schedule:
        """The next version of this schedule with ``changes`` applied."""
        return replace(self, version=self.version + 1, updated_at_ms=now_ms, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class NewSchedule:
    """A create command as received, before validation."""

    campaign_id: str
    name: str
    timing: Timing | None
    scrape: Scrape
