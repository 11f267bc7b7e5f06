"""Scraper settings (env prefix ``SCRAPER_``); units are part of every name."""

from __future__ import annotations

import os
import socket

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from campaign_common.api_keys import KeyList
from campaign_common.runs.keys import DEFAULT_PARTITIONS
from campaign_common.settings import ServiceSettings


def _default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class ScraperSettings(ServiceSettings):
    # A malformed setting is reported without its value (metrics keys are secrets, Redis URLs
    # may carry passwords).
    model_config = SettingsConfigDict(
        env_prefix="SCRAPER_", frozen=True, extra="ignore", hide_input_in_errors=True
    )

    # Independent Redis masters for Redlock (JSON list in the environment), 3 or 5 of them;
    # redis:// or rediss:// (TLS with the REDIS_TLS_* files), ACL user:password in the URL.
    lock_redis_urls: list[str] = Field(min_length=1)
    # Per-node deadline of one lock command (the client also caps it at lock_ttl_ms / 10).
    lock_node_timeout_s: float = Field(0.2, gt=0)
    # Lease of a campaign lock; a running run extends it every lock_ttl_ms / 3.
    lock_ttl_ms: int = Field(30_000, ge=100)
    lock_drift_factor: float = Field(0.01, ge=0, lt=1)
    # How often every lock master is PINGed for campaigns_lock_master_up and the dashboard.
    lock_probe_interval_s: float = Field(5.0, gt=0)
    # Cap on the total time one run holds its campaign lock (then it ends FAILED "lease
    # lost: ..."); keep it above run_timeout_s + cluster_slot_wait_s and every schedule's
    # run timeout. A BUFFER_ONE run waits at most this long (+ one TTL) for the lock.
    lock_max_lease_s: float = Field(4 * 3600.0, gt=0)
    # Campaign runs running at once across every worker (0: no limit), as expiring slots.
    max_cluster_runs: int = Field(0, ge=0)
    cluster_slot_ttl_ms: int = Field(30_000, ge=100)
    # How long a run waits for a cluster slot before it is left pending and retried.
    cluster_slot_wait_s: float = Field(60.0, ge=0)
    # Defaults for limits a schedule leaves at 0 (0 here: no limit).
    run_timeout_s: float = Field(3600.0, gt=0)
    start_deadline_s: int = Field(0, ge=0)
    max_pages_per_run: int = Field(0, ge=0)
    max_bytes_per_run: int = Field(0, ge=0)
    # Politeness per target host, counted per worker process (see scraper_svc.politeness).
    per_host_concurrency: int = Field(2, ge=1)
    per_host_delay_ms: int = Field(0, ge=0)
    # An entry pending this long without its worker touching it (the worker died or froze) is
    # taken over by another worker; must be longer than lock_ttl_ms (checked at start-up).
    reclaim_idle_ms: int = Field(60_000, ge=100)
    # How often a worker looks for such entries.
    reclaim_interval_s: float = Field(5.0, gt=0)
    # An entry delivered more times than this (its workers keep dying) is dead-lettered.
    max_deliveries: int = Field(5, ge=1)
    # How often the retry pump moves due attempts from the delay queue to the runs stream.
    retry_poll_ms: int = Field(250, ge=10)
    # Prometheus /metrics on this port (on `metrics_host`); unset: no metrics endpoint.
    metrics_port: int | None = Field(None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    # Bearer keys /metrics asks for (JSON list or comma-separated); empty: /metrics is open.
    # /healthz stays open for probes.
    metrics_keys: KeyList = []
    # Backoff of runs left pending (lock quorum down, no cluster slot, state Redis errors).
    retry_delay_s: float = Field(1.0, gt=0)
    retry_max_delay_s: float = Field(30.0, gt=0)
    # Name of this worker in the consumer group; stable names let a restart resume its entries.
    consumer_name: str = Field(default_factory=_default_consumer_name, min_length=1)
    # Worker processes this command runs (scraper_svc.processes), each with `concurrency`
    # runs at once; default: one per core. The per-host politeness limits count per process.
    processes: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    # Runs processed at once by each worker process: sized for throughput (a run mostly waits
    # on the network); the per-host politeness limits still hold each target host back.
    concurrency: int = Field(32, ge=1)
    # Run partitions (campaign_common.runs.keys): the scheduler's number; every worker reads
    # every partition, sharing its `concurrency` run slots among them.
    partitions: int = Field(DEFAULT_PARTITIONS, ge=1, le=1024)
    # Entries read per XREADGROUP (never more than the free run slots).
    read_batch: int = Field(32, ge=1)
    block_ms: int = Field(500, ge=1)
    fetch_timeout_s: float = Field(10.0, gt=0)
    max_redirects: int = Field(5, ge=0)
    max_response_bytes: int = Field(5 * 1024 * 1024, ge=1)
    user_agent: str = "campaign-scraper/0.1 (+https://github.com/campaign-platform)"
    # Allow fetching private, loopback, link-local and metadata addresses (local stack only).
    allow_private_targets: bool = False
    results_cap: int = Field(1000, ge=1)
    # Run retention: run records, written markers, results lists and campaign fences (in the
    # state and on the lock masters) expire this long after their last write or acquisition.
    # Must equal SCHEDULER_RUN_RETENTION_S (docs/operations.md), and outlive any lease plus the
    # take-over of a dead worker's runs (checked below; campaign_common.runs.writer says why).
    run_retention_s: float = Field(14 * 24 * 3600.0, gt=0)
    # Stored replies of re-sendable scripts (campaign_common.runs.opscript) live this long.
    operation_ttl_s: float = Field(3600.0, gt=0)
    shutdown_grace_s: float = Field(10.0, ge=0)

    def other_redis_urls(self) -> list[tuple[str, str]]:
        return [("LOCK_REDIS_URLS", url) for url in self.lock_redis_urls]

    @model_validator(mode="after")
    def _reclaim_after_lease(self) -> ScraperSettings:
        if self.reclaim_idle_ms <= self.lock_ttl_ms:
            raise ValueError(
                f"reclaim_idle_ms ({self.reclaim_idle_ms}) must be longer than lock_ttl_ms "
                f"({self.lock_ttl_ms}): a dead worker's campaign lock must have expired before "
                "its runs are taken over"
            )
        return self

    @model_validator(mode="after")
    def _fences_outlive_leases(self) -> ScraperSettings:
        longest_s = self.lock_max_lease_s + self.reclaim_idle_ms / 1000
        if self.run_retention_s <= longest_s:
            raise ValueError(
                f"SCRAPER_RUN_RETENTION_S ({self.run_retention_s:g}) must be longer than "
                f"lock_max_lease_s + reclaim_idle_ms ({longest_s:g} s): a campaign fence must "
                "outlive every lease and the take-over of a dead worker's runs, or a stale "
                "holder's write could pass it"
            )
        return self
