"""The scheduler's Prometheus metrics (served by `campaign_common.observability.metrics`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from functools import partial

from prometheus_client import Counter, Gauge, Histogram

from campaign_common.observability.grpc_metrics import MetricsInterceptor, ServerMetrics
from campaign_common.observability.metrics import declare_build_info
from campaign_common.runs.deadletters import DeadLetters
from campaign_common.runs.emission import Emission
from campaign_common.runs.log import RunLog
from campaign_common.runs.retryqueue import RetryQueue
from campaign_common.supervisor import LoopMetrics
from campaign_common.tasks import every
from campaigns.v1 import scheduler_service_pb2
from scheduler_svc.leases import PartitionLeases
from scheduler_svc.model import ScheduleState
from scheduler_svc.replicas import ReplicaRoster

log = logging.getLogger(__name__)

FIRES = Counter(
    "campaigns_scheduler_fires_total",
    "Scheduled fires handled, by result: emitted here, deduplicated (another replica's or a "
    "re-send), capped, stale (the replica's copy of the schedule is behind: refused), missed "
    "(recorded as SKIPPED)",
    ["result"],
)
FIRE_LAG = Histogram(
    "campaigns_scheduler_fire_lag_seconds",
    "Delay from a fire's nominal time to its emission on the runs stream",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
SCHEDULES = Gauge("campaigns_scheduler_schedules", "Schedules by state", ["state"])
OUTCOMES = Counter(
    "campaigns_run_outcomes_total",
    "Final run outcomes seen by the scheduler (succeeded, failed, dead_lettered)",
    ["outcome"],
)
MISSED = Counter(
    "campaigns_scheduler_missed_fires_total",
    "Fires recorded as SKIPPED instead of run: missed while no scheduler ran, emission failing "
    "for the whole catch-up window, or handled later than the window",
)
AUTO_PAUSES = Counter(
    "campaigns_scheduler_auto_pauses_total", "Schedules paused after consecutive failures"
)
OUTCOME_ERRORS = Counter(
    "campaigns_scheduler_outcome_errors_total",
    "Run events the outcome follower failed on (a bug or bad data): logged, acked, skipped",
)
# campaigns_scheduler_loop_up{loop}, campaigns_scheduler_loop_restarts_total{loop}
LOOPS = LoopMetrics.declare("campaigns_scheduler")


GRPC = ServerMetrics.declare("campaigns_scheduler")
BUILD_INFO = declare_build_info("scheduler")
# Every label value is known up front: each series exists (at 0) from start-up.
for _result in [*(emission.value for emission in Emission), "missed"]:
    FIRES.labels(result=_result)
for _outcome in ("succeeded", "failed", "dead_lettered"):
    OUTCOMES.labels(outcome=_outcome)
for _state in ScheduleState:
    SCHEDULES.labels(state=_state.value)


def grpc_interceptor() -> MetricsInterceptor:
    """Counts every SchedulerService call (health and reflection are not counted)."""
    service = scheduler_service_pb2.DESCRIPTOR.services_by_name["SchedulerService"]
    return MetricsInterceptor(GRPC, [service])


def count_schedules(counts: Mapping[ScheduleState, int]) -> None:
    """Export the per-state gauge from ``counts`` (the registry's, kept up to date per change),
    read when Prometheus scrapes: a change costs the gauge nothing."""
    for state in ScheduleState:
        SCHEDULES.labels(state=state.value).set_function(partial(_count, counts, state))


def _count(counts: Mapping[ScheduleState, int], state: ScheduleState) -> float:
    return counts.get(state, 0)


RUNS_PENDING = Gauge(
    "campaigns_runs_pending", "Run requests delivered to a scraper and not yet acknowledged"
)
RUNS_LAG = Gauge("campaigns_runs_lag", "Run requests not yet delivered to any scraper")
PARTITION_PENDING = Gauge(
    "campaigns_partition_runs_pending",
    "Run requests of the partition delivered to a scraper and not yet acknowledged",
    ["partition"],
)
PARTITION_LAG = Gauge(
    "campaigns_partition_runs_lag",
    "Run requests of the partition not yet delivered to any scraper",
    ["partition"],
)
PARTITION_OWNED = Gauge(
    "campaigns_scheduler_partition_owned",
    "1 for each run partition and the scheduler replica whose lease fires it (every "
    "replica's, read from the leases)",
    ["partition", "replica"],
)
DEAD_LETTERS = Gauge("campaigns_dead_letters", "Runs parked in the dead-letter stream")
RETRIES_WAITING = Gauge(
    "campaigns_retry_queue_waiting", "Next attempts of failed runs waiting in the delay queue"
)

WORKERS_SEEN_WITHIN_MS = 60_000
WORKERS_SEEN = Gauge(
    "campaigns_scraper_workers_seen",
    "Scraper workers (consumers of the runs stream) that read or claimed runs in the last 60 s",
)


REPLICAS_SEEN = Gauge(
    "campaigns_scheduler_replicas_seen",
    "Scheduler replicas that reported themselves alive in the last 30 s",
)


class StreamGauges:
    """Refreshes the stream gauges every ``interval_s`` (Redis reads stay off scrape time)."""

    def __init__(
        self,
        runs: RunLog,
        dead_letters: DeadLetters,
        retries: RetryQueue,
        roster: ReplicaRoster,
        interval_s: float = 5.0,
        leases: PartitionLeases | None = None,
    ) -> None:
        self._runs = runs
        self._leases = leases
        self._dead = dead_letters
        self._retries = retries
        self._roster = roster
        self._interval_s = interval_s

    async def run(self, stop: asyncio.Event) -> None:
        await every(self._interval_s, stop, self.refresh, "stream gauges refresh")

    async def refresh(self) -> None:
        total_pending = total_lag = 0
        for partition in self._runs.partitions:
            pending, lag = await self._runs.backlog(partition)
            PARTITION_PENDING.labels(partition=str(partition.index)).set(pending)
            PARTITION_LAG.labels(partition=str(partition.index)).set(lag)
            total_pending += pending
            total_lag += lag
        RUNS_PENDING.set(total_pending)
        RUNS_LAG.set(total_lag)
        if self._leases is not None:
            holders = await self._leases.holders()
            PARTITION_OWNED.clear()  # owners change: only the current pairs are shown
            for index, replica in holders.items():
                PARTITION_OWNED.labels(partition=str(index), replica=replica).set(1)
        DEAD_LETTERS.set(await self._dead.count())
        RETRIES_WAITING.set(await self._retries.waiting())
        WORKERS_SEEN.set(await self._runs.workers_seen(WORKERS_SEEN_WITHIN_MS))
        REPLICAS_SEEN.set(await self._roster.beat())
