"""Schedules, durations and times in words."""

from __future__ import annotations

import pytest

from gateway.ui.wording import describe_cron, describe_spec, duration, number, when


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("30 8 * * 1-5", "every weekday at 08:30"),
        ("30 8 * * mon-fri", "every weekday at 08:30"),
        ("0 9 * * *", "every day at 09:00"),
        ("0 9 * * 1", "every Monday at 09:00"),
        ("0 9 * * 7", "every Sunday at 09:00"),
        ("0 9 * * 1,5", "every Monday and Friday at 09:00"),
        ("0 9 * * 1,3,5", "every Monday, Wednesday and Friday at 09:00"),
        ("0 9 * * 6,0", "every Saturday and Sunday at 09:00"),
        ("0 9 * * fri-sun", "every Friday, Saturday and Sunday at 09:00"),
        ("0 6 1 * *", "on day 1 of every month at 06:00"),
        ("*/15 * * * *", "every 15 minutes"),
        ("*/15 * * * 1-5", "every 15 minutes on weekdays"),
        ("* * * * *", "every minute"),
        ("5 * * * *", "every hour at minute 5"),
        ("0 9 * 1 *", "cron 0 9 * 1 *"),
        ("0 9-17 * * *", "cron 0 9-17 * * *"),
        ("0 9 * * 9", "cron 0 9 * * 9"),
        ("0 9 * *", "cron 0 9 * *"),
    ],
)
def test_wording_cron_in_words(expression: str, words: str) -> None:
    assert describe_cron(expression) == words


def test_wording_spec_names_the_time_zone_of_a_cron_only() -> None:
    cron = {"cron": "30 8 * * 1-5", "intervalSeconds": None, "runAt": None}
    assert describe_spec({**cron, "timezone": "Europe/Berlin"}) == (
        "every weekday at 08:30 Europe/Berlin"
    )
    interval = {"cron": None, "intervalSeconds": 30, "runAt": None, "timezone": "Europe/Berlin"}
    assert describe_spec(interval) == "every 30 s"
    once = {"cron": None, "intervalSeconds": None, "runAt": "2099-12-01T09:00:00.000Z"}
    assert describe_spec({**once, "timezone": "UTC"}) == "once at 2099-12-01 09:00:00 UTC"


@pytest.mark.parametrize(
    ("seconds", "words"),
    [(30, "30 s"), (90, "90 s"), (300, "5 min"), (7200, "2 h"), (86400, "1 d"), (2.5, "2.5 s")],
)
def test_wording_durations(seconds: float, words: str) -> None:
    assert duration(seconds) == words


def test_wording_times_are_utc_and_unset_is_a_dash() -> None:
    assert when("2026-11-30T08:30:00.123Z") == "2026-11-30 08:30:00 UTC"
    assert when(None) == "-"


def test_wording_numbers_drop_a_zero_fraction() -> None:
    assert (number(5.0), number(0.25), number(1e9)) == ("5", "0.25", "1000000000")
    assert (number(float("nan")), number(float("inf"))) == ("nan", "inf")


def test_wording_names_the_seconds_dialect_and_the_jitter() -> None:
    spec = {"cron": "30 0 8 * * *", "cronDialect": "seconds6", "timezone": "Asia/Tokyo"}
    assert describe_spec(spec) == "every day at 08:00:30 Asia/Tokyo"
    assert describe_spec({**spec, "cron": "*/10 0 8 * * *"}) == (
        "cron with seconds */10 0 8 * * * Asia/Tokyo"
    )
    assert describe_spec({**spec, "cron": "0 */15 * * * 1-5"}) == (
        "every 15 minutes on weekdays Asia/Tokyo"
    )
    assert describe_spec({**spec, "cron": "30 */15 * * * *"}) == (
        "cron with seconds 30 */15 * * * * Asia/Tokyo"
    ), "not every 15 minutes on the minute"
    assert describe_spec({**spec, "cron": "0 8 * * *"}) == "cron with seconds 0 8 * * * Asia/Tokyo"
    assert describe_spec({**spec, "cronDialect": "posix5", "cron": "0 8 * * *"}) == (
        "every day at 08:00 Asia/Tokyo"
    )
    jittered = {"intervalSeconds": 3600, "jitterSeconds": 90}
    assert describe_spec(jittered) == "every 1 h, each fire up to 90 s late (jitter)"
