"""Domain types of a run as the scraper sees it; Redis and protobuf stay out of this module."""

from __future__ import annotations

from dataclasses import dataclass, field

from campaign_common.retry_policy import RetryPolicy
from campaign_common.runs.limits import RunLimits
from scraper_svc.extract import Fields


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
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Times the runs stream delivered this entry (1 for a first read; more after reclaims).
    deliveries: int = 1
    # The RunRequested body as received: a retry or a dead letter re-sends it as it was.
    payload: bytes = b""
    # The run partition whose runs stream delivered the entry (campaign_common.runs.keys).
    partition: int = 0


@dataclass(frozen=True)
class PageResult:
    """What one URL of a run yielded; ``fields`` are all None for an error status."""

    url: str
    status_code: int
    fields: Fields
    fetched_at_ms: int


@dataclass(frozen=True)
class RunLookup:
    """What a run needs to know before it starts: whether its attempt has its outcome already
    (a redelivery), and the highest fence that wrote for its campaign (`fence_floor`)."""

    finished: bool
    fence_floor: int
