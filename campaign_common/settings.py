"""Settings base: one frozen settings object per service, read from its env prefix only.

Only `__main__`/`server` modules build settings; everything else receives them as arguments.
"""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Fields every service has. Subclasses set ``env_prefix`` (``SCHEDULER_``, ...)."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    state_redis_url: str = "redis://127.0.0.1:6379/0"
    log_level: str = "INFO"
    log_json: bool = True
    # Every network wait has a deadline; this is the default for single Redis commands.
    redis_timeout_s: float = 5.0
    # OTLP/gRPC collector (Jaeger: http://127.0.0.1:4317); empty: spans are not exported.
    otlp_endpoint: str = ""
