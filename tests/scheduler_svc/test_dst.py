"""DST policy of cron schedules (DESIGN section 4), in several zones and both transitions:
a local time that does not exist runs once at the first valid instant after the gap; a local
time that occurs twice runs once (its first occurrence). Intervals and one-shots are instants.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from campaign_common.timeutil import datetime_to_ms, ms_to_datetime
from scheduler_svc.model import Schedule, ScheduleState, Scrape, Timing, TimingKind
from scheduler_svc.triggers import build_trigger, next_fire_ms, upcoming_fires


def _fires(cron: str, zone: str, since: datetime, until: datetime) -> list[datetime]:
    trigger = build_trigger(Timing(TimingKind.CRON, cron=cron, timezone=zone), 0)
    found: list[datetime] = []
    previous: int | None = None
    while True:
        fire = next_fire_ms(trigger, after_ms=datetime_to_ms(since), previous_ms=previous)
        if fire is None or fire >= datetime_to_ms(until):
            return found
        found.append(ms_to_datetime(fire).astimezone(ZoneInfo(zone)))
        previous = fire


def _local(zone: str, year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(zone))


# (zone, spring-forward day, the skipped hour, fall-back day, the repeated hour)
ZONES = [
    ("America/New_York", (2026, 3, 8), 2, (2026, 11, 1), 1),
    ("Europe/Berlin", (2026, 3, 29), 2, (2026, 10, 25), 2),
    ("Australia/Sydney", (2026, 10, 4), 2, (2026, 4, 5), 2),
    ("America/Santiago", (2026, 9, 6), 0, (2026, 4, 5), 23),
]


def _day_window(zone: str, day: tuple[int, int, int]) -> tuple[datetime, datetime]:
    start = datetime(*day, tzinfo=ZoneInfo(zone)) - timedelta(days=1)
    return start.astimezone(UTC), (start + timedelta(days=3)).astimezone(UTC)


@pytest.mark.parametrize(("zone", "spring", "gap_hour", "fall", "repeat_hour"), ZONES)
def test_dst_skipped_time_runs_once_at_the_end_of_the_gap(
    zone: str,
    spring: tuple[int, int, int],
    gap_hour: int,
    fall: tuple[int, int, int],
    repeat_hour: int,
) -> None:
    since, until = _day_window(zone, spring)
    fires = _fires(f"30 {gap_hour} * * *", zone, since, until)
    assert len(fires) == 3  # one per day, the transition day included
    on_the_day = [f for f in fires if (f.year, f.month, f.day) == spring]
    assert len(on_the_day) == 1
    # The first valid instant after the gap: the wall clock reads the end of the gap.
    fire = on_the_day[0]
    assert (fire.hour, fire.minute) == (gap_hour + 1, 0)
    just_before = fire.astimezone(UTC) - timedelta(seconds=1)
    assert just_before.astimezone(ZoneInfo(zone)).hour == gap_hour - 1 or gap_hour == 0


@pytest.mark.parametrize(("zone", "spring", "gap_hour", "fall", "repeat_hour"), ZONES)
def test_dst_repeated_time_runs_once_at_its_first_occurrence(
    zone: str,
    spring: tuple[int, int, int],
    gap_hour: int,
    fall: tuple[int, int, int],
    repeat_hour: int,
) -> None:
    since, until = _day_window(zone, fall)
    fires = _fires(f"30 {repeat_hour} * * *", zone, since, until)
    assert len(fires) == 3
    on_the_day = [f for f in fires if (f.year, f.month, f.day) == fall]
    assert len(on_the_day) == 1 and on_the_day[0].fold == 0
    assert on_the_day[0] == _local(zone, *fall, repeat_hour, 30)


def test_dst_every_quarter_hour_through_both_transitions_in_new_york() -> None:
    zone = "America/New_York"
    spring = _fires("*/15 1-3 * * *", zone, *_day_window(zone, (2026, 3, 8)))
    day = [f.strftime("%H:%M") for f in spring if f.day == 8]
    # 02:00-02:45 do not exist: they run once, together, at 03:00.
    assert day == ["01:00", "01:15", "01:30", "01:45", "03:00", "03:15", "03:30", "03:45"]
    fall = _fires("*/15 1-3 * * *", zone, *_day_window(zone, (2026, 11, 1)))
    day = [f.strftime("%H:%M%Z") for f in fall if f.day == 1]
    # 01:00-01:45 happen twice: they run in the first pass (EDT) only.
    assert day[:4] == ["01:00EDT", "01:15EDT", "01:30EDT", "01:45EDT"]
    assert day[4:8] == ["02:00EST", "02:15EST", "02:30EST", "02:45EST"]
    assert day[8:] == ["03:00EST", "03:15EST", "03:30EST", "03:45EST"]


def test_dst_asked_from_inside_the_repeated_hour_skips_to_after_it() -> None:
    zone = ZoneInfo("America/New_York")
    second_pass = datetime(2026, 11, 1, 1, 10, tzinfo=zone, fold=1)
    trigger = build_trigger(Timing(TimingKind.CRON, cron="30 1 * * *", timezone=str(zone)), 0)
    fire = next_fire_ms(trigger, after_ms=datetime_to_ms(second_pass))
    assert fire is not None
    assert ms_to_datetime(fire).astimezone(zone) == datetime(2026, 11, 2, 1, 30, tzinfo=zone)


def test_dst_lord_howe_half_hour_shift() -> None:
    zone = "Australia/Lord_Howe"  # clocks move by 30 minutes
    fires = _fires("15 2 * * *", zone, *_day_window(zone, (2026, 10, 4)))
    on_the_day = [f.strftime("%H:%M") for f in fires if f.day == 4]
    assert on_the_day == ["02:30"]


def test_dst_interval_is_elapsed_time_across_transitions() -> None:
    anchor = datetime_to_ms(datetime(2026, 3, 8, 5, 0, tzinfo=UTC))
    trigger = build_trigger(
        Timing(TimingKind.INTERVAL, interval_s=3600, timezone="America/New_York"), anchor
    )
    fires: list[int] = []
    previous = None
    while len(fires) < 4:
        fire = next_fire_ms(trigger, after_ms=anchor, previous_ms=previous)
        assert fire is not None
        fires.append(fire)
        previous = fire
    assert [b - a for a, b in itertools.pairwise(fires)] == [3_600_000] * 3


def test_dst_preview_shows_the_policy() -> None:
    schedule = Schedule(
        schedule_id="s",
        campaign_id="c",
        name="n",
        timing=Timing(TimingKind.CRON, cron="30 2 * * *", timezone="America/New_York"),
        scrape=Scrape(urls=("http://x.test/",), selectors=()),
        version=1,
        state=ScheduleState.ACTIVE,
        created_at_ms=0,
        updated_at_ms=0,
    )
    now = datetime_to_ms(datetime(2026, 3, 7, 12, 0, tzinfo=UTC))
    preview = [ms_to_datetime(ms).isoformat() for ms in upcoming_fires(schedule, now, 3)]
    assert preview == [
        "2026-03-08T07:00:00+00:00",  # 03:00 EDT: 02:30 did not exist
        "2026-03-09T06:30:00+00:00",
        "2026-03-10T06:30:00+00:00",
    ]
