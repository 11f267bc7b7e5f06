"""Local wall-clock fire times in a time zone, with the DST policy of DESIGN section 4.

A cron expression names local wall-clock times. `WallClockTrigger` asks an inner trigger that
works on naive wall-clock time (expressed in UTC, where no time is skipped or repeated) for
the next matching wall time, and maps it to an instant in the zone:

- a wall time that exists once is that instant;
- a wall time that occurs twice (clocks go back) is its first occurrence only, so a repeated
  local time runs once;
- a wall time that does not exist (clocks go forward) runs at the first valid instant after
  the gap, i.e. at the transition itself (02:30 on the spring-forward day in New York runs at
  03:00 EDT). Several wall times in one gap map to that one instant, which runs once.

The map from wall time to instant never decreases, so the first fire at or after an instant is
found by stepping through wall times from just before it; the number of steps is bounded.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo

from apscheduler.triggers.base import BaseTrigger

# Wall times that map before the asked-for instant are stepped over (at most the repeated
# hour of a fall-back day, one minute at a time); more means a trigger that cannot advance.
MAX_STEPS = 2000
_TICK = timedelta(microseconds=1)


def _naive_wall(instant: datetime, tz: tzinfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def _transition_after(before: datetime, after: datetime, tz: tzinfo) -> datetime:
    """The first instant in (before, after] whose UTC offset is that of ``after`` (seconds)."""
    target = after.astimezone(tz).utcoffset()
    low, high = before, after  # offset(low) != target, offset(high) == target
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        middle = middle.replace(microsecond=0)
        if middle <= low:
            break
        if middle.astimezone(tz).utcoffset() == target:
            high = middle
        else:
            low = middle
    return high


def wall_to_instant(wall: datetime, tz: tzinfo) -> datetime:
    """The UTC instant a naive local ``wall`` time fires at, under the DST policy."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if _naive_wall(first, tz) == wall:
        return first  # exists (fold 0 is the first of two occurrences)
    # In a gap: fold=1 reads it with the offset after the transition, which lands before it.
    before = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    return _transition_after(min(before, first), max(before, first), tz)


def search_start(instant: datetime, tz: tzinfo) -> datetime:
    """The earliest wall time (naive) whose instant can be at or after ``instant``."""
    just_before = instant - _TICK
    wall = _naive_wall(just_before, tz)
    # Inside the second pass of a repeated hour the wall times repeat earlier instants; read
    # the wall time with the first pass's offset, which skips them at once.
    offset = wall.replace(tzinfo=tz, fold=0).utcoffset()
    if offset is None:
        return wall
    return just_before.astimezone(UTC).replace(tzinfo=None) + offset


class WallClockTrigger(BaseTrigger):  # type: ignore[misc]
    """Fires at the wall times of ``wall`` (a trigger computing in UTC) as local times in ``tz``."""

    def __init__(self, wall: BaseTrigger, tz: tzinfo) -> None:
        self._wall = wall
        self.timezone = tz

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        due = now if previous_fire_time is None else max(now, previous_fire_time + _TICK)
        start = search_start(due, self.timezone)
        for _ in range(MAX_STEPS):
            candidate = self._wall.get_next_fire_time(None, start.replace(tzinfo=UTC))
            if candidate is None:
                return None
            wall = candidate.astimezone(UTC).replace(tzinfo=None)
            instant = wall_to_instant(wall, self.timezone)
            if instant >= due:
                return instant
            start = wall + _TICK
        return None

    def __str__(self) -> str:
        return f"wallclock[{self._wall}, {self.timezone}]"


class NeverTrigger(BaseTrigger):  # type: ignore[misc]
    """A trigger with no fire times (a stored expression that can never fire)."""

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        return None

    def __str__(self) -> str:
        return "never"


class BoundedTrigger(BaseTrigger):  # type: ignore[misc]
    """The fires of ``inner`` from ``start_ms`` to ``end_ms`` inclusive (0: unbounded)."""

    def __init__(self, inner: BaseTrigger, start_ms: int, end_ms: int) -> None:
        self._inner = inner
        self._start = datetime.fromtimestamp(start_ms / 1000, UTC) if start_ms else None
        self._end = datetime.fromtimestamp(end_ms / 1000, UTC) if end_ms else None

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        if self._start is not None and now < self._start:
            now = self._start
        fire: datetime | None = self._inner.get_next_fire_time(previous_fire_time, now)
        if fire is None or (self._end is not None and fire > self._end):
            return None
        return fire

    def __str__(self) -> str:
        return f"bounded[{self._inner}, {self._start}, {self._end}]"
