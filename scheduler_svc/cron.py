"""Cron dialect: POSIX 5-field expressions translated into APScheduler triggers.

Dialect ``posix5``: ``minute hour day-of-month month day-of-week``.
- Day of week counts from Sunday: 0 and 7 are Sunday, 1 is Monday ... 6 is Saturday; names
  ``sun``..``sat`` are accepted. APScheduler 3 numbers weekdays from Monday, so the field is
  expanded here into the explicit set of days and handed over as day names, never numbers.
- Day-of-month / day-of-week OR rule (as in Vixie cron): when both fields are restricted
  (neither starts with ``*``) a day matches if EITHER matches; APScheduler alone would AND
  them, so such expressions become the OR of two triggers.
"""

from __future__ import annotations

from datetime import tzinfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")


class CronSyntaxError(ValueError):
    """The expression is not valid in the posix5 dialect; the message says which part."""


def _day_number(token: str) -> int:
    lowered = token.lower()
    if lowered in _DAY_NAMES:
        return _DAY_NAMES.index(lowered)
    if not token.isdigit() or int(token) > 7:
        raise CronSyntaxError(f"day-of-week {token!r} is not 0-7 or sun..sat")
    return int(token) % 7


def _expand_item(item: str) -> set[int]:
    base, _, step_text = item.partition("/")
    step = 1
    if step_text:
        if not step_text.isdigit() or int(step_text) == 0:
            raise CronSyntaxError(f"day-of-week step {step_text!r} must be a positive number")
        step = int(step_text)
    if base == "*":
        low, high = 0, 6
    elif "-" in base:
        first, _, last = base.partition("-")
        low, high = _day_number(first), _day_number(last)
        high = 7 if last == "7" else high  # "5-7" is Friday to Sunday
        if low > high:
            raise CronSyntaxError(f"day-of-week range {base!r} runs backwards")
    else:
        low = _day_number(base)
        high = 6 if step_text else low  # "1/2": from Monday every second day
    return {day % 7 for day in range(low, high + 1, step)}


def weekday_names(field: str) -> str:
    """POSIX day-of-week field -> APScheduler day names, e.g. ``1-5`` -> ``mon,tue,...``."""
    days: set[int] = set()
    for item in field.split(","):
        if not item:
            raise CronSyntaxError(f"day-of-week {field!r} has an empty list item")
        days |= _expand_item(item)
    return ",".join(_DAY_NAMES[day] for day in sorted(days))


def _trigger(minute: str, hour: str, day: str, month: str, dow: str, tz: tzinfo) -> CronTrigger:
    try:
        return CronTrigger(
            minute=minute, hour=hour, day=day, month=month, day_of_week=dow, timezone=tz
        )
    except ValueError as exc:
        raise CronSyntaxError(str(exc)) from exc


def parse_cron(expression: str, tz: tzinfo) -> BaseTrigger:
    """Trigger for a posix5 expression in time zone ``tz``; raises CronSyntaxError."""
    parts = expression.split()
    if len(parts) != len(_FIELDS):
        raise CronSyntaxError(
            f"expected 5 fields ({' '.join(_FIELDS)}), got {len(parts)}: {expression!r}"
        )
    minute, hour, dom, month, dow = parts
    days = weekday_names(dow)
    if dom.startswith("*") or dow.startswith("*"):
        return _trigger(minute, hour, dom, month, days, tz)
    by_date = _trigger(minute, hour, dom, month, "*", tz)
    by_weekday = _trigger(minute, hour, "*", month, days, tz)
    return OrTrigger([by_date, by_weekday])
