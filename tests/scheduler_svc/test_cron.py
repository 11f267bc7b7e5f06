"""The posix5 cron dialect: weekday numbering, the OR rule, time zones."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from campaign_common.timeutil import datetime_to_ms, ms_to_datetime
from scheduler_svc.cron import CronSyntaxError, parse_cron, weekday_names
from scheduler_svc.triggers import next_fire_ms

SUNDAY_NOON = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)  # a Sunday


def _fires(expression: str, count: int, tz: str = "UTC") -> list[datetime]:
    trigger = parse_cron(expression, ZoneInfo(tz))
    fires: list[datetime] = []
    previous = None
    while len(fires) < count:
        fire = next_fire_ms(trigger, after_ms=datetime_to_ms(SUNDAY_NOON), previous_ms=previous)
        assert fire is not None
        fires.append(ms_to_datetime(fire).astimezone(ZoneInfo(tz)))
        previous = fire
    return fires


def test_cron_0_9_star_star_1_fires_on_mondays_at_nine() -> None:
    fires = _fires("0 9 * * 1", 4)
    assert all(f.weekday() == 0 and (f.hour, f.minute) == (9, 0) for f in fires)
    assert fires[0] == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def test_cron_sunday_is_zero_and_seven() -> None:
    assert weekday_names("0") == weekday_names("7") == "sun"
    assert all(f.weekday() == 6 for f in _fires("30 8 * * 7", 3))


def test_cron_weekday_ranges_lists_steps_and_names() -> None:
    assert weekday_names("1-5") == "mon,tue,wed,thu,fri"
    assert weekday_names("5-7") == "sun,fri,sat"
    assert weekday_names("*/2") == "sun,tue,thu,sat"
    assert weekday_names("MON,wed") == "mon,wed"
    business = _fires("0 9 * * 1-5", 10)
    assert {f.weekday() for f in business} == {0, 1, 2, 3, 4}


def test_cron_day_of_month_or_day_of_week_when_both_restricted() -> None:
    # POSIX: the 1st of the month OR any Friday (APScheduler alone would AND them).
    fires = _fires("0 0 1 * 5", 6)
    assert all(f.day == 1 or f.weekday() == 4 for f in fires)
    assert any(f.day != 1 for f in fires) and any(f.day == 1 for f in fires)


def test_cron_time_zone_is_honoured() -> None:
    fires = _fires("0 9 * * *", 2, tz="Europe/Berlin")
    assert all(f.hour == 9 for f in fires)
    assert fires[0].astimezone(UTC).hour == 8  # CET is UTC+1 in winter


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("* * * *", "expected 5 fields"),
        ("61 * * * *", "maximum value"),
        ("* * * * 8", "day-of-week '8'"),
        ("* * * * 5-2", "runs backwards"),
        ("* * * * 1/0", "positive number"),
    ],
)
def test_cron_invalid_expressions_say_what_is_wrong(expression: str, fragment: str) -> None:
    with pytest.raises(CronSyntaxError, match=fragment):
        parse_cron(expression, ZoneInfo("UTC"))


@pytest.mark.parametrize(
    ("macro", "same_as"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@HOURLY", "0 * * * *"),
    ],
)
def test_cron_macros_are_their_expressions(macro: str, same_as: str) -> None:
    assert _fires(macro, 3, "Europe/Berlin") == _fires(same_as, 3, "Europe/Berlin")


def test_cron_reboot_is_refused_with_a_reason() -> None:
    with pytest.raises(CronSyntaxError, match="@reboot is not supported"):
        parse_cron("@reboot", ZoneInfo("UTC"))
    with pytest.raises(CronSyntaxError, match="unknown macro"):
        parse_cron("@sometimes", ZoneInfo("UTC"))


@pytest.mark.parametrize("expression", ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4,6,9,11 *"])
def test_cron_that_can_never_fire_is_refused(expression: str) -> None:
    with pytest.raises(CronSyntaxError, match="can never fire"):
        parse_cron(expression, ZoneInfo("UTC"))


@pytest.mark.parametrize("expression", ["0 0 29 2 *", "0 0 31 2 1", "0 0 31 * *"])
def test_cron_rare_but_possible_dates_are_accepted(expression: str) -> None:
    assert _fires(expression, 1)


def test_cron_stored_expression_that_never_fires_computes_no_fires_quickly() -> None:
    # One accepted before validation refused it: bounded, no fires, no hang.
    from scheduler_svc.model import Timing, TimingKind
    from scheduler_svc.triggers import build_trigger

    trigger = build_trigger(Timing(TimingKind.CRON, cron="0 0 31 2 *"), 0)
    assert next_fire_ms(trigger, after_ms=datetime_to_ms(SUNDAY_NOON)) is None
