"""What the Redlock client did: one record per attempt, and running totals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Outcome = Literal["granted", "held", "unavailable", "expired", "extended", "lost", "released"]


@dataclass(frozen=True, slots=True)
class AttemptStats:
    """What one attempt did, for metrics: see ``Redlock(on_attempt=...)``."""

    operation: Literal["acquire", "extend", "release"]
    resource: str
    attempt: int
    elapsed_ms: float
    granted: int
    nodes: int
    outcome: Outcome


@dataclass
class RedlockCounters:
    """Running totals since the client was created (cheap; always on)."""

    attempts: int = 0
    acquired: int = 0
    held: int = 0
    unavailable: int = 0
    expired: int = 0
    fence_confirmations: int = 0
    extended: int = 0
    lost: int = 0
    released: int = 0
    released_expired: int = 0
