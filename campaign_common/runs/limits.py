"""Execution limits of a schedule's runs: their one definition inside the services.

The wire contract is the proto's `campaigns.v1.RunLimits` (REST mirrors it at the gateway's
HTTP edge). Behind it, the scheduler, which validates and stores a schedule's limits, and the
scraper, which obeys them, share `RunLimits`, its bounds (`LIMIT_FIELDS`) and the conversion
from and to the proto. 0 means "no limit" or "the service's default".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from campaigns.v1 import schedule_pb2


class Overlap(StrEnum):
    """What a run does when its campaign already has a run holding the campaign lock."""

    SKIP = "SKIP"  # end SKIPPED "overlap" (the default)
    BUFFER_ONE = "BUFFER_ONE"  # wait for the lock, at most one waiting run per campaign
    ALLOW_ALL = "ALLOW_ALL"  # no campaign lock and no fencing


@dataclass(frozen=True, slots=True)
class RunLimits:
    """Limits of a schedule's runs. As requested, 0 means "no limit" or "the default"; once
    the scraper resolved them (`scraper_svc.limits.resolve`), 0 means "none".

    ``run_timeout_s`` is whole seconds on the wire; a worker's default may be a fraction.
    ``max_total_runs``, ``pause_after_failures`` and ``catch_up_window_s`` are the scheduler's
    to apply.
    """

    overlap: Overlap = Overlap.SKIP
    max_runs_per_window: int = 0
    window_s: int = 0
    max_total_runs: int = 0
    start_deadline_s: int = 0
    run_timeout_s: float = 0
    max_pages: int = 0
    max_bytes: int = 0
    per_host_concurrency: int = 0
    per_host_delay_ms: int = 0
    pause_after_failures: int = 0
    catch_up_window_s: int = 0  # the scheduler's; 0: the service's default

    @property
    def rate_limited(self) -> bool:
        return self.max_runs_per_window > 0 and self.window_s > 0


# proto field name -> (attribute, maximum); every limit is >= 0 and 0 means none.
LIMIT_FIELDS = {
    "max_runs_per_window": ("max_runs_per_window", 1_000_000),
    "window_seconds": ("window_s", 366 * 24 * 3600),
    "max_total_runs": ("max_total_runs", 1_000_000_000),
    "start_deadline_seconds": ("start_deadline_s", 7 * 24 * 3600),
    "run_timeout_seconds": ("run_timeout_s", 24 * 3600),
    "max_pages": ("max_pages", 100_000),
    "max_bytes": ("max_bytes", 10 * 1024**3),
    "per_host_concurrency": ("per_host_concurrency", 100),
    "per_host_delay_ms": ("per_host_delay_ms", 3_600_000),
    "pause_after_failures": ("pause_after_failures", 1000),
    "catch_up_window_seconds": ("catch_up_window_s", 12 * 3600),
}

_OVERLAP_TO_PROTO = {
    Overlap.SKIP: schedule_pb2.OVERLAP_POLICY_SKIP,
    Overlap.BUFFER_ONE: schedule_pb2.OVERLAP_POLICY_BUFFER_ONE,
    Overlap.ALLOW_ALL: schedule_pb2.OVERLAP_POLICY_ALLOW_ALL,
}
_OVERLAP_FROM_PROTO = {value: key for key, value in _OVERLAP_TO_PROTO.items()}


def limits_from_proto(limits: schedule_pb2.RunLimits) -> RunLimits:
    """The limits a message carries (an unknown or unset overlap policy is SKIP)."""
    values = {attribute: getattr(limits, name) for name, (attribute, _) in LIMIT_FIELDS.items()}
    return RunLimits(overlap=_OVERLAP_FROM_PROTO.get(limits.overlap, Overlap.SKIP), **values)


def limits_to_proto(limits: RunLimits) -> schedule_pb2.RunLimits:
    values = {
        name: int(getattr(limits, attribute)) for name, (attribute, _) in LIMIT_FIELDS.items()
    }
    return schedule_pb2.RunLimits(overlap=_OVERLAP_TO_PROTO[limits.overlap], **values)
