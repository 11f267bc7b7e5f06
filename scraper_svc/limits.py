"""Execution limits of one run: what the schedule asked for, merged with the worker's defaults.

A run request carries its schedule's limits (`campaign_common.runs.limits.RunLimits`, shared
with the scheduler; zero means "no limit" or "the service default");
`resolve` turns them into the limits the run obeys, schedule values overriding the defaults of
`scraper_svc.config.ScraperSettings`. The reasons a limit writes into a run's ``error`` field
are named here, so every module and test uses the same words.

Where each limit is enforced (see `scraper_svc.runner` for the order):

- overlap policy: `scraper_svc.overlap` (campaign lock, buffered run);
- cluster-wide concurrent runs: `scraper_svc.semaphore` (lease-based slots in the state Redis);
- per-worker concurrency: `scraper_svc.consumer` (slots reserved before reading);
- runs per window per campaign, start deadline: `scraper_svc.runner` (window in the store);
- run timeout: `scraper_svc.runner`; scrape budgets and politeness: `scraper_svc.scrape`.
"""

from __future__ import annotations

from dataclasses import dataclass

from campaign_common.runs.limits import RunLimits

OVERLAP = "overlap"
RATE_LIMIT = "rate limit"
MISSED_START_DEADLINE = "missed start deadline"
FENCED = "fenced"
TIMEOUT = "timeout"
LEASE_LOST = "lease lost"
LOCK_QUORUM_UNAVAILABLE = "lock quorum unavailable"
CLUSTER_LIMIT = "cluster run limit reached"
PREVIOUS_WORKER_HOLDS_LOCK = "taken over while its previous worker still holds the campaign lock"


@dataclass(frozen=True)
class LimitDefaults:
    """The worker's defaults for limits a schedule leaves at 0 (from settings)."""

    start_deadline_s: int = 0
    run_timeout_s: float = 3600.0
    max_pages: int = 0
    max_bytes: int = 0
    per_host_concurrency: int = 2
    per_host_delay_ms: int = 0


def resolve(requested: RunLimits, defaults: LimitDefaults) -> RunLimits:
    """The limits a run obeys: the schedule's values where set, the defaults elsewhere."""
    return RunLimits(
        overlap=requested.overlap,
        max_runs_per_window=requested.max_runs_per_window,
        window_s=requested.window_s,
        start_deadline_s=requested.start_deadline_s or defaults.start_deadline_s,
        run_timeout_s=requested.run_timeout_s or defaults.run_timeout_s,
        max_pages=requested.max_pages or defaults.max_pages,
        max_bytes=requested.max_bytes or defaults.max_bytes,
        per_host_concurrency=requested.per_host_concurrency or defaults.per_host_concurrency,
        per_host_delay_ms=requested.per_host_delay_ms or defaults.per_host_delay_ms,
    )


def missed_start_deadline(limits: RunLimits, scheduled_for_ms: int, now_ms: int) -> bool:
    """True when a run starting now is later than its start deadline after its nominal time."""
    if limits.start_deadline_s <= 0 or scheduled_for_ms <= 0:
        return False
    return now_ms - scheduled_for_ms > limits.start_deadline_s * 1000
