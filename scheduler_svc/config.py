"""Scheduler settings (env prefix ``SCHEDULER_``)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from campaign_common.api_keys import KeyList
from campaign_common.grpc_tls import ServerTls, check_pair
from campaign_common.runs.keys import DEFAULT_PARTITIONS
from campaign_common.settings import ServiceSettings
from scheduler_svc.validation import MAX_CATCH_UP_WINDOW_S, MAX_JITTER_S


class SchedulerSettings(ServiceSettings):
    # A malformed setting is reported without its value (API keys are secrets).
    model_config = SettingsConfigDict(
        env_prefix="SCHEDULER_", frozen=True, extra="ignore", hide_input_in_errors=True
    )

    host: str = "127.0.0.1"
    port: int = 50051
    # Bearer tokens accepted on the gRPC API (JSON list or comma-separated; health and
    # reflection stay open). Empty: no authentication.
    api_keys: KeyList = []
    # TLS of the gRPC API: certificate and key (PEM) to serve TLS; with a client CA bundle too,
    # every client must present a certificate signed by it (mutual TLS). Unset: plaintext.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None
    # Fires missed while no scheduler ran are emitted on start-up if this recent.
    catch_up_window_s: float = 60.0
    next_fire_preview: int = 5
    # How long a command waits for its own event to come back through the log.
    apply_timeout_s: float = 5.0
    # Group commit of the API's commands (scheduler_svc.batcher.Linger): a script call waits
    # at most this long for more commands while the event loop is busy, and leaves at once
    # with this many. 0 ms: no waiting (each call takes what queued while the last one ran).
    append_linger_ms: float = Field(10.0, ge=0, le=1000)
    append_batch: int = Field(16, ge=1, le=1000)
    log_block_ms: int = 1000
    log_batch: int = 500
    shutdown_grace_s: float = 5.0
    # Emission dedupe markers live this long: longer than a fire can be emitted late (jitter
    # plus catch-up window, 12 h each at most), so exactly-once holds across replicas.
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
    # Bearer keys /metrics asks for (same forms as api_keys); empty: /metrics is open.
    # /healthz on that port stays open for probes.
    metrics_keys: KeyList = []
    # Fires emitted at once (a burst waits for a free one); they use a connection pool of their
    # own, this size, apart from the API's.
    fire_concurrency: int = Field(32, ge=1, le=1000)
    # Run partitions (campaign_common.runs.keys): the same number for every scheduler and
    # scraper of a deployment (checked at start-up); fixed once runs exist.
    partitions: int = Field(DEFAULT_PARTITIONS, ge=1, le=1024)
    # Replicas split the partitions by leases of this length (scheduler_svc.leases): a dead
    # replica's partitions move to the others within about one lease and a quarter.
    partition_lease_s: float = Field(10.0, ge=0.5, le=600)
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
    # replays only the log after it). Often and small: a fold of the tens of thousands of
    # entries a busy half minute leaves takes the process's CPU for seconds, and API calls
    # queue behind it; folding every few seconds spreads the same work evenly.
    snapshot_interval_s: float = Field(2.0, gt=0)
    # Log entries already in the snapshot are trimmed once this old; a replica lagging further
    # behind reloads from the snapshot.
    log_keep_s: float = Field(3600.0, ge=0)
    # Run retention: run records, run indexes, written markers, results lists and campaign
    # fences expire this long after their last write. Must equal SCRAPER_RUN_RETENTION_S (the
    # scraper writes the same keys; docs/operations.md).
    run_retention_s: float = Field(14 * 24 * 3600.0, gt=0)
    # Stored replies of re-sendable scripts (campaign_common.runs.opscript) live this long:
    # longer than any client re-send of one call (seconds), by a wide margin.
    operation_ttl_s: float = Field(3600.0, gt=0)
    # How often one replica's housekeeping trims and forgets (every replica may run it).
    housekeeping_interval_s: float = Field(60.0, gt=0)

    @model_validator(mode="after")
    def _tls_complete(self) -> SchedulerSettings:
        check_pair(self.tls_cert_file, self.tls_key_file, "SCHEDULER_TLS_CERT_FILE",
                   "SCHEDULER_TLS_KEY_FILE")  # fmt: skip
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError(
                "SCHEDULER_TLS_CLIENT_CA_FILE asks for mutual TLS, which needs TLS: set "
                "SCHEDULER_TLS_CERT_FILE and SCHEDULER_TLS_KEY_FILE too"
            )
        return self

    @model_validator(mode="after")
    def _dedupe_outlives_late_fires(self) -> SchedulerSettings:
        # The latest a fire may be emitted after its nominal time.
        latest_s = MAX_JITTER_S + max(MAX_CATCH_UP_WINDOW_S, self.catch_up_window_s)
        if self.run_dedupe_ttl_s < latest_s:
            raise ValueError(
                f"SCHEDULER_RUN_DEDUPE_TTL_S must be at least {latest_s:.0f} (a fire may be "
                "emitted that late: jitter plus catch-up window), or a late fire could run twice"
            )
        return self

    def server_tls(self) -> ServerTls | None:
        """The gRPC server's TLS, None for plaintext."""
        if self.tls_cert_file is None or self.tls_key_file is None:
            return None
        return ServerTls(
            self.tls_cert_file, self.tls_key_file, self.tls_client_ca_file, prefix="SCHEDULER_"
        )
