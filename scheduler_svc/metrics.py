"""The scheduler's Prometheus metrics (served by `campaign_common.metrics`)."""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import Counter, Gauge, Histogram

from scheduler_svc.model import Schedule, ScheduleState

FIRES = Counter(
    "campaigns_scheduler_fires_total",
    "Scheduled fires handled, by result (emitted here, duplicate of another replica's, capped)",
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
    "Fires older than the catch-up window, recorded as SKIPPED at start-up",
)
AUTO_PAUSES = Counter(
    "campaigns_scheduler_auto_pauses_total", "Schedules paused after consecutive failures"
)


def count_schedules(schedules: list[Schedule]) -> None:
    """Set the per-state gauge from the registry's current schedules."""
    tally = Tally(schedule.state for schedule in schedules)
    for state in ScheduleState:
        SCHEDULES.labels(state=state.value).set(tally.get(state, 0))
