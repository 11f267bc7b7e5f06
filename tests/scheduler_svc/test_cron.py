"""The cron dialects (posix5, seconds6): weekday numbering, field ranges, the OR rule, zones."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from campaign_common.timeutil import datetime_to_ms, ms_to_datetime
from scheduler_svc.cron import CronSyntaxError, parse_cron, weekday_names
from scheduler_svc.model import CronDialect
from scheduler_svc.triggers import next_fire_ms

SUNDAY_NOON = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)  # a Sunday


def _fires(
    expression: str, count: int, tz: str = "UTC", dialect: CronDialect = CronDialect.POSIX5
) -> list[datetime]:
    trigger = parse_cron(expression, ZoneInfo(tz), dialect)
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
        ("61 * * * *", "minute '61' is not valid"),
        ("* * * * * *", "set the seconds6 dialect"),
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


SECONDS6 = CronDialect.SECONDS6


def test_seconds6_fires_at_the_given_seconds() -> None:
    fires = _fires("15,45 30 9 * * *", 3, dialect=SECONDS6)
    assert [(f.hour, f.minute, f.second) for f in fires] == [(9, 30, 15), (9, 30, 45), (9, 30, 15)]
    assert fires[0].date() == datetime(2026, 11, 30).date()


def test_seconds6_numbers_weekdays_as_posix5_does() -> None:
    # Sunday is 0 and 7, Monday is 1 (APScheduler alone would read 0 as Monday).
    for field, weekday in (("0", 6), ("7", 6), ("1", 0), ("6", 5), ("sat", 5)):
        fires = _fires(f"0 0 12 * * {field}", 3, dialect=SECONDS6)
        assert {f.weekday() for f in fires} == {weekday}, field
    assert _fires("0 0 9 * * 1-5", 10, dialect=SECONDS6) == _fires("0 9 * * 1-5", 10)


def test_seconds6_macros_fire_at_second_zero() -> None:
    assert _fires("@hourly", 3, dialect=SECONDS6) == _fires("0 0 * * * *", 3, dialect=SECONDS6)
    assert _fires("@daily", 2, dialect=SECONDS6) == _fires("@daily", 2)


def test_seconds6_needs_six_fields() -> None:
    with pytest.raises(CronSyntaxError, match="expected 6 fields"):
        parse_cron("0 9 * * *", ZoneInfo("UTC"), SECONDS6)


# field -> (lowest, highest) accepted; one below and one above are refused, naming the field.
_RANGES = {
    "second": (0, 59),
    "minute": (0, 59),
    "hour": (0, 23),
    "day-of-month": (1, 31),
    "month": (1, 12),
    "day-of-week": (0, 7),
}


def _with(field: str, value: int) -> str:
    fields = ["0", "0", "0", "*", "*", "*"]
    fields[list(_RANGES).index(field)] = str(value)
    return " ".join(fields)


@pytest.mark.parametrize("field", list(_RANGES))
def test_cron_field_ranges_are_enforced_and_errors_name_the_field(field: str) -> None:
    low, high = _RANGES[field]
    for value in (low, high):
        assert _fires(_with(field, value), 1, dialect=SECONDS6)
        if field != "second":  # the same field in posix5
            assert _fires(_with(field, value).split(" ", 1)[1], 1)
    for value in (low - 1, high + 1):
        if value < 0:
            continue  # "-1" is no number at all
        with pytest.raises(CronSyntaxError, match=f"{field} '{value}'"):
            parse_cron(_with(field, value), ZoneInfo("UTC"), SECONDS6)
