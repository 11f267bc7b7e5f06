"""Gateway settings (env prefix ``GATEWAY_``): where to listen, where the scheduler is, API keys.

``GATEWAY_API_KEYS`` and ``GATEWAY_METRICS_KEYS`` take a JSON list (``["k1","k2"]``) or a
comma-separated string (``k1,k2``); empty means that part is open. Keys are kept as secrets so
they never appear in a repr, a log line or a settings error.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from campaign_common.api_keys import KeyList
from campaign_common.grpc_tls import ClientTls, check_pair


class GatewaySettings(BaseSettings):
    # A malformed setting is reported without its value (API keys are secrets).
    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_", frozen=True, extra="ignore", hide_input_in_errors=True
    )

    host: str = "127.0.0.1"
    # 0 picks a free port (tests); `GatewayServer.port` tells which one.
    port: int = Field(8080, ge=0, le=65535)
    scheduler_target: str = "127.0.0.1:50051"
    # Deadline of every gRPC call to the scheduler (readiness probes included).
    grpc_timeout_s: float = Field(5.0, gt=0)
    # Bearer token the gateway sends to the scheduler (one of its SCHEDULER_API_KEYS).
    scheduler_token: SecretStr = SecretStr("")
    # TLS to the scheduler: on when scheduler_tls is true or any file below is set. The CA
    # bundle checks the scheduler's certificate (unset: the system's roots); certificate and
    # key (PEM) are the gateway's own, for mutual TLS; server_name checks the certificate
    # against that name instead of the target's host.
    scheduler_tls: bool = False
    scheduler_tls_ca_file: Path | None = None
    scheduler_tls_cert_file: Path | None = None
    scheduler_tls_key_file: Path | None = None
    scheduler_tls_server_name: str = ""
    # Request bodies above this are answered 413 before they are parsed.
    max_body_bytes: int = Field(1024 * 1024, ge=1024, le=4 * 1024 * 1024)
    # Bearer tokens accepted on the API routes; empty = authentication off.
    api_keys: KeyList = []
    # Bearer keys /metrics asks for (same forms); empty: /metrics is open.
    metrics_keys: KeyList = []
    # After SIGTERM: how long in-flight requests may take before they are cancelled.
    shutdown_grace_s: float = Field(5.0, ge=0)
    # OTLP/gRPC collector (Jaeger: http://127.0.0.1:4317); empty: spans are not exported.
    otlp_endpoint: str = ""
    # Operator dashboard (/ui): Jaeger UI base URL for trace links (empty: no links), the
    # Prometheus endpoints its health page reads (empty: not shown), and whether the session
    # cookie is Secure (keep it on; browsers accept Secure cookies from http://localhost).
    ui_jaeger_url: str = ""
    ui_scheduler_metrics_url: str = ""
    ui_scraper_metrics_url: str = ""
    # Bearer token the health page sends to those endpoints (their *_METRICS_KEYS).
    ui_metrics_token: SecretStr = SecretStr("")
    ui_cookie_secure: bool = True
    ui_session_max_age_s: int = Field(8 * 3600, gt=0)
    log_level: str = "INFO"
    log_json: bool = True
    access_log: bool = True
    # Access log lines of /healthz, /readyz and /metrics (one per probe or scrape): off.
    probe_access_log: bool = False

    @model_validator(mode="after")
    def _tls_complete(self) -> GatewaySettings:
        check_pair(
            self.scheduler_tls_cert_file,
            self.scheduler_tls_key_file,
            "GATEWAY_SCHEDULER_TLS_CERT_FILE",
            "GATEWAY_SCHEDULER_TLS_KEY_FILE",
        )
        return self

    def scheduler_client_tls(self) -> ClientTls | None:
        """TLS of the channel to the scheduler, None for plaintext."""
        files = (self.scheduler_tls_ca_file, self.scheduler_tls_cert_file)
        if not self.scheduler_tls and all(f is None for f in files):
            return None
        return ClientTls(
            self.scheduler_tls_ca_file,
            self.scheduler_tls_cert_file,
            self.scheduler_tls_key_file,
            self.scheduler_tls_server_name,
            prefix="GATEWAY_SCHEDULER_",
        )
