"""Domain types of a run as the scraper sees it; Redis and protobuf stay out of this module."""

from __future__ import annotations

from dataclasses import dataclass, field

from scraper_svc.extract import Fields
from scraper_svc.limits import RunLimits


@dataclass(frozen=True)
class RunRequest:
    """A RunRequested entry of the runs stream, as the domain sees it."""

    entry_id: str
    run_id: str
    schedule_id: str
    campaign_id: str
    attempt: int
    urls: tuple[str, ...]
    selectors: tuple[tuple[str, str], ...]
    traceparent: str = ""
    tracestate: str = ""
    # Nominal fire time (epoch ms; 0 if unknown) and the schedule's limits (0: default).
    scheduled_for_ms: int = 0
    limits: RunLimits = field(default_factory=RunLimits)


@dataclass(frozen=True)
class PageResult:
    """What one URL of a run yielded; ``fields`` are all None for an error status."""

    url: str
    status_code: int
    fields: Fields
    fetched_at_ms: int
