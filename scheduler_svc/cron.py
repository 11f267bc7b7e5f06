"""Cron dialects: POSIX 5-field expressions (and the seconds dialect) as APScheduler triggers.

Dialect ``posix5`` (the default): ``minute hour day-of-month month day-of-week``.
Dialect ``seconds6``, named explicitly (never guessed from the field count, so six fields in
``posix5`` stay an error): ``second minute hour day-of-month month day-of-week``, the second
0-59 and every other field exactly as in ``posix5``; a macro fires at second 0.
Field ranges: second 0-59, minute 0-59, hour 0-23, day-of-month 1-31, month 1-12 (or
``jan``..``dec``), day-of-week 0-7.
- Day of week counts from Sunday: 0 and 7 are Sunday, 1 is Monday ... 6 is Saturday; names
  ``sun``..``sat`` are accepted. APScheduler 3 numbers weekdays from Monday, so the field is
  expanded here into the explicit set of days and handed over as day names, never numbers.
- Day-of-month / day-of-week OR rule (as in Vixie cron): when both fields are restricted
  (neither starts with ``*``) a day matches if EITHER matches; APScheduler alone would AND
  them, so such expressions become the OR of two triggers.
- Macros: ``@yearly`` (= ``@annually``), ``@monthly``, ``@weekly``, ``@daily`` (=
  ``@midnight``) and ``@hourly``. ``@reboot`` is refused: a schedule has no boot.
- Times are local wall-clock times in the schedule's zone; `scheduler_svc.wallclock` maps them
  to instants with the DST policy (a skipped time runs once at the end of the gap, a repeated
  time runs once).
- An expression that can never fire (``0 0 31 2 *``) is refused: no date in 29 years of
  calendar (every weekday of every date, leap days included) matches it.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from functools import lru_cache

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

from scheduler_svc.model import CronDialect
from scheduler_svc.wallclock import WallClockTrigger

_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_DIALECT_FIELDS = {CronDialect.POSIX5: _FIELDS, CronDialect.SECONDS6: ("second", *_FIELDS)}
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# The probe for "can never fire": a 28-year calendar cycle has every date on every weekday.
_PROBE_FROM = datetime(2001, 1, 1, tzinfo=UTC)
_PROBE_UNTIL = datetime(2030, 1, 1, tzinfo=UTC)


class CronSyntaxError(ValueError):
    """The expression is not valid in its dialect; the message says which part."""


def _day_number(token: str) -> int:
    lowered = token.lower()
    if lowered in _DAY_NAMES:
        return _DAY_NAMES.index(lowered)
    if not token.isdigit() or int(token) > 7:
        raise CronSyntaxError(f"day-of-week {token[:20]!r} is not 0-7 or sun..sat")
    return int(token) % 7


def _expand_item(item: str) -> set[int]:
    base, _, step_text = item.partition("/")
    step = 1
    if step_text:
        if not step_text.isdigit() or int(step_text) == 0:
            raise CronSyntaxError(f"day-of-week step {step_text[:20]!r} must be a positive number")
        step = int(step_text)
    if base == "*":
        low, high = 0, 6
    elif "-" in base:
        first, _, last = base.partition("-")
        low, high = _day_number(first), _day_number(last)
        high = 7 if last == "7" else high  # "5-7" is Friday to Sunday
        if low > high:
            raise CronSyntaxError(f"day-of-week range {base[:20]!r} runs backwards")
    else:
        low = _day_number(base)
        high = 6 if step_text else low  # "1/2": from Monday every second day
    return {day % 7 for day in range(low, high + 1, step)}


def weekday_names(field: str) -> str:
    """POSIX day-of-week field -> APScheduler day names, e.g. ``1-5`` -> ``mon,tue,...``."""
    days: set[int] = set()
    for item in field.split(","):
        if not item:
            raise CronSyntaxError(f"day-of-week {field[:40]!r} has an empty list item")
        days |= _expand_item(item)
    return ",".join(_DAY_NAMES[day] for day in sorted(days))


def _trigger(second: str, minute: str, hour: str, day: str, month: str, dow: str) -> CronTrigger:
    """A trigger on naive wall-clock time (computed in UTC, where no time is skipped)."""
    try:
        return CronTrigger(
            second=second,
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=dow,
            timezone=UTC,
        )
    except ValueError as exc:
        raise CronSyntaxError(str(exc)[:200]) from exc


def expand_macro(expression: str) -> str:
    """``@daily`` -> ``0 0 * * *``; other expressions unchanged."""
    text = expression.strip()
    if not text.startswith("@"):
        return text
    lowered = text.lower()
    if lowered == "@reboot":
        raise CronSyntaxError(
            "@reboot is not supported: a schedule has no boot; use runAt for one run, or "
            "trigger the schedule by hand"
        )
    if lowered not in MACROS:
        raise CronSyntaxError(f"unknown macro {text[:20]!r}; use one of {', '.join(MACROS)}")
    return MACROS[lowered]


def _never_fires(trigger: CronTrigger) -> bool:
    probe = CronTrigger(
        **{field.name: str(field) for field in trigger.fields}, timezone=UTC, end_date=_PROBE_UNTIL
    )
    return probe.get_next_fire_time(None, _PROBE_FROM) is None


_APS_FIELDS = ("second", "minute", "hour", "day", "month")
_RANGES = {"second": "0-59", "minute": "0-59", "hour": "0-23", "day": "1-31", "month": "1-12"}


def _check_field(name: str, value: str) -> None:
    """Judge one field alone, so the error names the field (APScheduler's does not)."""
    try:
        CronTrigger(**{name: value}, timezone=UTC)
    except ValueError as exc:
        label = "day-of-month" if name == "day" else name
        raise CronSyntaxError(
            f"{label} {value[:20]!r} is not valid (range {_RANGES[name]}): {str(exc)[:120]}"
        ) from exc


def _fields(expression: str, dialect: CronDialect) -> list[str]:
    """The expression's fields, seconds first (``0`` in posix5 and for macros)."""
    names = _DIALECT_FIELDS[dialect]
    text = expression.strip()
    if text.startswith("@"):
        return ["0", *expand_macro(text).split()]
    parts = text.split()
    if len(parts) != len(names):
        hint = " (six fields: set the seconds6 dialect)" if len(parts) == 6 else ""
        raise CronSyntaxError(
            f"expected {len(names)} fields ({' '.join(names)}) in the {dialect.lower()} "
            f"dialect, or a macro such as @daily; got {len(parts)}{hint}: {expression[:80]!r}"
        )
    return parts if dialect is CronDialect.SECONDS6 else ["0", *parts]


@lru_cache(maxsize=4096)  # triggers hold no state: validation and every zone share one
def _wall_trigger(expression: str, dialect: CronDialect) -> BaseTrigger:
    second, minute, hour, dom, month, dow = _fields(expression, dialect)
    for name, value in zip(_APS_FIELDS, (second, minute, hour, dom, month), strict=True):
        _check_field(name, value)
    days = weekday_names(dow)
    if dom.startswith("*") or dow.startswith("*"):
        single = _trigger(second, minute, hour, dom, month, days)
        if _never_fires(single):
            raise CronSyntaxError(
                f"{expression[:80]!r} can never fire: no date matches its day-of-month, "
                "month and day-of-week fields"
            )
        return single
    # OR of a date rule and a weekday rule: every weekday occurs in every month, so it fires.
    by_date = _trigger(second, minute, hour, dom, month, "*")
    by_weekday = _trigger(second, minute, hour, "*", month, days)
    return OrTrigger([by_date, by_weekday])


def parse_cron(
    expression: str, tz: tzinfo, dialect: CronDialect = CronDialect.POSIX5
) -> BaseTrigger:
    """Trigger for an expression (or macro) of ``dialect`` in time zone ``tz``; raises
    CronSyntaxError."""
    return WallClockTrigger(_wall_trigger(expression, dialect), tz)
