"""Scheduler settings (env prefix ``SCHEDULER_``)."""

from __future__ import annotations

import os
import socket
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from campaign_common.settings import ServiceSettings
from scheduler_svc.auth import split_keys


class SchedulerSettings(ServiceSettings):
    # A malformed setting is reported without its value (API keys are secrets).
    model_config = SettingsConfigDict(
        env_prefix="SCHEDULER_", frozen=True, extra="ignore", hide_input_in_errors=True
    )

    host: str = "127.0.0.1"
    port: int = 50051
    # Bearer tokens accepted on the gRPC API (JSON list or comma-separated; health and
    # reflection stay open). Empty: no authentication.
    api_keys: Annotated[list[SecretStr], NoDecode] = []
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
    # Fires emitted at once (a burst waits for a free one); they use a connection pool of their
    # own, this size, apart from the API's.
    fire_concurrency: int = Field(32, ge=1, le=1000)
    # How often the stream gauges (pending, lag, dead letters) are refreshed.
    gauge_refresh_s: float = 5.0
    # Retention of the runs stream and the run events stream: entries older than this are
    # trimmed, but never one a consumer group still needs (see campaign_common.runs.retention).
    runs_stream_retention_s: float = Field(7 * 24 * 3600.0, gt=0)
    run_events_retention_s: float = Field(7 * 24 * 3600.0, gt=0)
    # Dead letters nobody retried or purged are dropped after this long.
    dead_letters_retention_s: float = Field(30 * 24 * 3600.0, gt=0)
    # Consumers with nothing pending and idle this long are forgotten (gone processes).
    idle_consumer_s: float = Field(24 * 3600.0, gt=0)
    # How often the schedule log is folded into its snapshot (start-up loads the snapshot and
    # replays only the log after it).
    snapshot_interval_s: float = Field(30.0, gt=0)
    # Log entries already in the snapshot are trimmed once this old; a replica lagging further
    # behind reloads from the snapshot.
    log_keep_s: float = Field(3600.0, ge=0)
    # How often one replica's housekeeping trims and forgets (every replica may run it).
    housekeeping_interval_s: float = Field(60.0, gt=0)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        return split_keys(value)
