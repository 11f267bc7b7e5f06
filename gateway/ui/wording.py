"""Schedules, durations and times in words for people: "every weekday at 08:30 Europe/Berlin".

Common cron shapes are put in words (fixed times on every day, on weekdays, on named days or a
day of the month; every minute, every N minutes, hourly at a minute); anything else is shown
as the expression itself, which is never wrong.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

DAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_DAY_NUMBERS = {name[:3].lower(): index for index, name in enumerate(DAY_NAMES)}
_WEEKDAYS = frozenset(range(1, 6))
_WEEKEND = frozenset({0, 6})
_UNITS = ((86400, "d"), (3600, "h"), (60, "min"))


def duration(seconds: float) -> str:
    """``30`` -> "30 s", ``300`` -> "5 min", ``7200`` -> "2 h" (a unit only when exact)."""
    whole = int(seconds)
    if whole != seconds:
        return f"{seconds:g} s"
    for size, unit in _UNITS:
        if whole >= size and whole % size == 0:
            return f"{whole // size} {unit}"
    return f"{whole} s"


def number(value: float) -> str:
    """``5.0`` -> "5", ``0.25`` -> "0.25" (a gauge's value for people)."""
    return f"{value:.0f}" if math.isfinite(value) and value == int(value) else f"{value:g}"


def when(rfc3339: str | None) -> str:
    """An RFC 3339 instant as "2026-11-30 08:30:00 UTC"; "-" when unset."""
    if not rfc3339:
        return "-"
    instant = datetime.fromisoformat(rfc3339).astimezone(UTC)
    return instant.strftime("%Y-%m-%d %H:%M:%S UTC")


def _day_number(token: str) -> int | None:
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token) % 7
    return _DAY_NUMBERS.get(token.lower())


def _days(field: str) -> set[int] | None:
    """The weekdays of a day-of-week field made of names, numbers, ranges and lists."""
    days: set[int] = set()
    for part in field.split(","):
        low, _, high = part.partition("-")
        first, last = _day_number(low), _day_number(high or low)
        if first is None or last is None:
            return None
        if high and last == 0 and high != "0":  # "fri-sun" / "5-7": Sunday as the 7th day
            last = 7
        if last < first:
            return None
        days |= {day % 7 for day in range(first, last + 1)}
    return days


def _monday_first(day: int) -> int:
    return (day + 6) % 7


def _listing(names: list[str]) -> str:
    """ "Monday", "Monday and Friday", "Monday, Wednesday and Friday"."""
    if len(names) == 1:
        return names[0]
    return f"{', '.join(names[:-1])} and {names[-1]}"


def _day_phrase(dom: str, month: str, dow: str) -> tuple[str, str] | None:
    """("every weekday", "on weekdays") and the like; ("", "") for every day."""
    if month != "*":
        return None
    if dom != "*":
        if dow == "*" and dom.isdigit():
            return f"on day {dom} of every month", f"on day {dom} of every month"
        return None
    if dow == "*":
        return "", ""
    days = _days(dow)
    if days is None:
        return None
    if days == _WEEKDAYS:
        return "every weekday", "on weekdays"
    if days == _WEEKEND:
        return "every Saturday and Sunday", "on weekends"
    if len(days) == 7:
        return "", ""
    names = _listing([DAY_NAMES[day] for day in sorted(days, key=_monday_first)])
    return f"every {names}", f"on {names}"


def _time_phrase(minute: str, hour: str) -> tuple[bool, str] | None:
    """(True, "at 08:30") for a fixed time, (False, "every 15 minutes") for a frequency."""
    if minute.isdigit() and hour.isdigit():
        return True, f"at {int(hour):02d}:{int(minute):02d}"
    if hour != "*":
        return None
    if minute == "*":
        return False, "every minute"
    if minute.startswith("*/") and minute[2:].isdigit():
        return False, f"every {int(minute[2:])} minutes"
    if minute.isdigit():
        return False, f"every hour at minute {int(minute)}"
    return None


def describe_cron(expression: str, *, seconds_first: bool = False) -> str:
    """A POSIX 5-field cron in words; with ``seconds_first`` a 6-field one (its first field
    the second), in words when the second is fixed: "every day at 09:00:30"."""
    fields = expression.split()
    if not seconds_first:
        words = _cron_words(fields, "0", show_second=False)
    elif len(fields) == 6:
        words = _cron_words(fields[1:], fields[0], show_second=True)
    else:
        words = None
    if words is not None:
        return words
    return f"cron with seconds {expression}" if seconds_first else f"cron {expression}"


def _cron_words(fields: list[str], second: str, *, show_second: bool) -> str | None:
    if len(fields) != 5 or not (second.isdigit() and int(second) < 60):
        return None
    time = _time_phrase(fields[0], fields[1])
    day = _day_phrase(*fields[2:])
    if time is None or day is None:
        return None
    fixed, text = time
    every_form, on_form = day
    if fixed:
        return f"{every_form or 'every day'} {text}" + (
            f":{int(second):02d}" if show_second else ""
        )
    if int(second) != 0:  # "every 15 minutes" fires on the minute
        return None
    return f"{text} {on_form}".rstrip()


def describe_spec(spec: dict[str, Any]) -> str:
    """A schedule's ``schedule`` document (REST form) in words (jitter included)."""
    jitter = spec.get("jitterSeconds") or 0
    late = f", each fire up to {duration(jitter)} late (jitter)" if jitter else ""
    return _describe_timing(spec) + late


def _describe_timing(spec: dict[str, Any]) -> str:
    if spec.get("intervalSeconds") is not None:
        return f"every {duration(spec['intervalSeconds'])}"
    if spec.get("runAt"):
        return f"once at {when(spec['runAt'])}"
    if spec.get("cron"):
        zone = spec.get("timezone") or "UTC"
        seconds_first = str(spec.get("cronDialect") or "").lower() == "seconds6"
        return f"{describe_cron(spec['cron'], seconds_first=seconds_first)} {zone}"
    return "no schedule"
