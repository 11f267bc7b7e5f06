"""Domain schedule records for the scheduler's unit tests (no API, no validation)."""

from __future__ import annotations

from scheduler_svc.model import Schedule, ScheduleState, Scrape, Timing, TimingKind

DAILY = Timing(TimingKind.CRON, cron="0 3 * * *")


def schedule_record(
    sid: str,
    version: int = 1,
    state: ScheduleState = ScheduleState.ACTIVE,
    *,
    timing: Timing = DAILY,
    created_at_ms: int = 1,
) -> Schedule:
    """A schedule as the registry holds it; ``updated_at_ms`` is its version (monotonic)."""
    return Schedule(
        schedule_id=sid,
        campaign_id=f"c-{sid}",
        name=sid,
        timing=timing,
        scrape=Scrape(urls=("http://example.com/",), selectors=()),
        version=version,
        state=state,
        created_at_ms=created_at_ms,
        updated_at_ms=version,
    )
