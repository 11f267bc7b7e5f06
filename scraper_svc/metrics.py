"""The scraper's Prometheus metrics (served by `campaign_common.observability.metrics`).

Base units, ``_total`` counters, no per-run labels. Outcomes are counted by the worker that
wrote them, so summing over workers gives the cluster's totals.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from campaign_common.observability.metrics import declare_build_info
from campaign_common.supervisor import LoopMetrics

RUNS = Counter(
    "campaigns_scraper_runs_total",
    "Run attempts ended by this worker, by outcome (succeeded, failed, skipped, "
    "retry_scheduled: another attempt queued, dead_lettered, deferred: same attempt later "
    "because no lock quorum or cluster slot)",
    ["outcome"],
)
RUN_DURATION = Histogram(
    "campaigns_scraper_run_duration_seconds",
    "Time from a run's start (RunStarted) to the end of its scrape",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
)
DEAD_LETTERS = Counter(
    "campaigns_scraper_dead_letters_total",
    "Runs this worker parked in the dead-letter stream, by cause (attempts, deliveries)",
    ["cause"],
)
LOCK_FAILURES = Counter(
    "campaigns_scraper_lock_failures_total",
    "Campaign lock failures, by reason (held: another run has it, quorum_unavailable, "
    "lease_lost, fenced)",
    ["reason"],
)
LOCK_ACQUIRE = Histogram(
    "campaigns_scraper_lock_acquire_seconds",
    "Time to acquire a campaign lock (granted attempts)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
RECLAIMED = Counter(
    "campaigns_scraper_reclaimed_total",
    "Runs-stream entries this worker took over from workers that stopped processing them",
)
RETRIES_MOVED = Counter(
    "campaigns_scraper_retries_moved_total",
    "Next attempts this worker moved from the retry delay queue to the runs stream",
)
FETCHES = Counter(
    "campaigns_scraper_fetches_total",
    "Page fetches by status class of the final response (2xx, 3xx, 4xx, 5xx; error: no "
    "response: refused, timed out, too large, connection failed)",
    ["status_class"],
)
FETCH_BYTES = Counter(
    "campaigns_scraper_fetched_bytes_total", "Response body bytes read by page fetches"
)
FETCH_DURATION = Histogram(
    "campaigns_scraper_fetch_duration_seconds",
    "Time of one page fetch, redirects and body included",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
IN_FLIGHT = Gauge("campaigns_scraper_runs_in_flight", "Runs this worker is processing now")
# Set by scraper_svc.lock_health; masters are named by index only (URLs may hold credentials).
LOCK_MASTERS_REACHABLE = Gauge(
    "campaigns_lock_masters_reachable",
    "Lock masters that answered this worker's last PING within the per-node deadline "
    "(SCRAPER_LOCK_NODE_TIMEOUT_S); locks need a majority",
)
LOCK_MASTER_UP = Gauge(
    "campaigns_lock_master_up",
    "Per lock master (its index in SCRAPER_LOCK_REDIS_URLS): 1 answered this worker's last "
    "PING within the per-node deadline, 0 not",
    ["master"],
)
# campaigns_scraper_loop_up{loop}, campaigns_scraper_loop_restarts_total{loop}
LOOPS = LoopMetrics.declare("campaigns_scraper")
BUILD_INFO = declare_build_info("scraper")
# Every label value is known up front: each series exists (at 0) from start-up, and the
# run path counts through these children (no label look-up per run).
RUN_OUTCOMES = {
    outcome: RUNS.labels(outcome=outcome)
    for outcome in (
        "succeeded", "failed", "skipped", "retry_scheduled", "dead_lettered", "deferred"
    )
}  # fmt: skip
DEAD_LETTER_CAUSES = {
    cause: DEAD_LETTERS.labels(cause=cause) for cause in ("attempts", "deliveries")
}
LOCK_FAILURE_REASONS = {
    reason: LOCK_FAILURES.labels(reason=reason)
    for reason in ("held", "quorum_unavailable", "lease_lost", "fenced")
}
FETCH_STATUS_CLASSES = {
    status_class: FETCHES.labels(status_class=status_class)
    for status_class in ("2xx", "3xx", "4xx", "5xx", "error")
}
