"""A schedule's retry policy: how many attempts a run gets and how long it waits between them.

Shared by both services: the scheduler validates the policy and stores it with the defaults
filled in (so the schedule resource shows the effective values); the scraper reads it from
each run request (filling defaults again, for requests of older schedules without one) and
computes when the next attempt is due.

Delay before attempt n + 1, after attempt n failed:
    min(max_delay_s, initial_delay_s * multiplier ** (n - 1)) * (1 - jitter * U[0, 1))
so jitter only ever shortens a delay and never pushes it past the cap.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from campaigns.v1 import schedule_pb2

MAX_ATTEMPTS_LIMIT = 100
MAX_DELAY_LIMIT_S = 24 * 3600.0
MAX_MULTIPLIER = 100.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3
    initial_delay_s: float = 5.0
    max_delay_s: float = 300.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def allows_another(self, attempt: int) -> bool:
        """Whether attempt ``attempt`` (1-based) failing leaves another attempt."""
        return attempt < self.max_attempts

    def delay_s(self, failed_attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before the attempt after ``failed_attempt``."""
        # Bounded inputs (attempts <= 100, multiplier <= 100) keep the power finite.
        exponent = min(max(0, failed_attempt - 1), MAX_ATTEMPTS_LIMIT)
        base = min(self.max_delay_s, self.initial_delay_s * self.multiplier**exponent)
        return base * (1.0 - self.jitter * rand())


DEFAULT = RetryPolicy()


def from_proto(message: schedule_pb2.RetryPolicy) -> RetryPolicy:
    """The effective policy: zero (or unset) fields take the defaults."""
    return RetryPolicy(
        max_attempts=message.max_attempts or DEFAULT.max_attempts,
        initial_delay_s=message.initial_delay_seconds or DEFAULT.initial_delay_s,
        max_delay_s=message.max_delay_seconds or DEFAULT.max_delay_s,
        multiplier=message.multiplier or DEFAULT.multiplier,
        jitter=message.jitter if message.HasField("jitter") else DEFAULT.jitter,
    )


def to_proto(policy: RetryPolicy) -> schedule_pb2.RetryPolicy:
    return schedule_pb2.RetryPolicy(
        max_attempts=policy.max_attempts,
        initial_delay_seconds=policy.initial_delay_s,
        max_delay_seconds=policy.max_delay_s,
        multiplier=policy.multiplier,
        jitter=policy.jitter,
    )


def problems(message: schedule_pb2.RetryPolicy) -> list[tuple[str, str]]:
    """(field name, what is wrong) for each invalid field of a requested policy."""
    found: list[tuple[str, str]] = []
    if not 0 <= message.max_attempts <= MAX_ATTEMPTS_LIMIT:
        found.append(
            ("max_attempts", f"must be between 1 and {MAX_ATTEMPTS_LIMIT} (0: the default, 3)")
        )
    for name in ("initial_delay_seconds", "max_delay_seconds"):
        value = getattr(message, name)
        if not (math.isfinite(value) and 0 <= value <= MAX_DELAY_LIMIT_S):
            found.append((name, f"must be between 0 (the default) and {MAX_DELAY_LIMIT_S:.0f}"))
    multiplier = message.multiplier
    if not (math.isfinite(multiplier) and (multiplier == 0 or 1 <= multiplier <= MAX_MULTIPLIER)):
        found.append(("multiplier", f"must be between 1 and {MAX_MULTIPLIER:.0f} (0: the default)"))
    jitter = message.jitter
    if message.HasField("jitter") and not (math.isfinite(jitter) and 0 <= jitter <= 1):
        found.append(("jitter", "must be between 0 and 1 (a fraction of each delay)"))
    if not found:
        policy = from_proto(message)
        if policy.max_delay_s < policy.initial_delay_s:
            found.append(
                (
                    "max_delay_seconds",
                    f"must be at least initial_delay_seconds ({policy.initial_delay_s:g})",
                )
            )
    return found
