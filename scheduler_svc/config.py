"""Scheduler settings (env prefix ``SCHEDULER_``)."""

from __future__ import annotations

import os
import socket

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from campaign_common.settings import ServiceSettings


class SchedulerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SCHEDULER_", frozen=True, extra="ignore")

    host: str = "127.0.0.1"
    port: int = 50051
    # Fires missed while no scheduler ran are emitted on start-up if this recent.
    catch_up_window_s: float = 60.0
    next_fire_preview: int = 5
    # How long a command waits for its own event to come back through the log.
    apply_timeout_s: float = 5.0
    log_block_ms: int = 1000
    log_batch: int = 500
    shutdown_grace_s: float = 5.0
    run_dedupe_ttl_s: int = 24 * 3600
    # Run-outcome follower: consumer name of this replica in the group on the run events.
    replica_name: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    # Entries another replica left unacked this long are taken over.
    outcome_claim_idle_ms: int = 30_000
    # Alerts: webhook URL (empty: off) and consecutive failures of a campaign that alert.
    alert_webhook_url: str = ""
    alert_after_failures: int = 3
    # Prometheus /metrics on this port (on `host`); unset: no metrics endpoint.
    metrics_port: int | None = None
    # How often the stream gauges (pending, lag, dead letters) are refreshed.
    gauge_refresh_s: float = 5.0
