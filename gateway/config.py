"""Gateway settings (env prefix ``GATEWAY_``): where to listen, where the scheduler is, API keys.

``GATEWAY_API_KEYS`` takes a JSON list (``["k1","k2"]``) or a comma-separated string
(``k1,k2``); empty means authentication is off. Keys are kept as secrets so they never appear
in a repr or a log line.
"""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


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
    # Request bodies above this are answered 413 before they are parsed.
    max_body_bytes: int = Field(1024 * 1024, ge=1024, le=4 * 1024 * 1024)
    # Bearer tokens accepted on the API routes; empty = authentication off.
    api_keys: Annotated[list[SecretStr], NoDecode] = []
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
    ui_cookie_secure: bool = True
    ui_session_max_age_s: int = Field(8 * 3600, gt=0)
    log_level: str = "INFO"
    log_json: bool = True
    access_log: bool = True
    # Access log lines of /healthz, /readyz and /metrics (one per probe or scrape): off.
    probe_access_log: bool = False

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        """Accept a JSON list or a comma-separated string from the environment."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    return json.loads(text)
                except ValueError:
                    raise ValueError("is not a valid JSON list of keys (not shown)") from None
            return [key.strip() for key in text.split(",") if key.strip()]
        return value
