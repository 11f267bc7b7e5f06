"""Settings base: one frozen settings object per service, read from its env prefix only, and
the standard ``OTEL_*`` variables (`TelemetrySettings`), shared by every service.

Only `__main__`/`server` modules build settings; everything else receives them as arguments.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import unquote

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from campaign_common.redis_topology import (
    Mode,
    RedisTopology,
    parse_sentinel,
    split_sentinels,
    url_problems,
)
from campaign_common.tls import TlsFiles


class ServiceSettings(BaseSettings):
    """Fields every service has. Subclasses set ``env_prefix`` (``SCHEDULER_``, ...).

    The Redis settings are described in `campaign_common.redis_topology` and
    docs/operations.md ("Redis topologies"). A malformed setting is reported by name, never
    with its value (keys are secrets, Redis URLs carry passwords); subclasses inherit
    ``hide_input_in_errors``.
    """

    model_config = SettingsConfigDict(frozen=True, extra="ignore", hide_input_in_errors=True)

    state_redis_mode: Mode = "standalone"
    state_redis_url: str = "redis://127.0.0.1:6379/0"
    state_redis_sentinels: Annotated[list[str], NoDecode] = []
    state_redis_sentinel_master: str = ""
    # PEM files of every rediss:// connection of the service (state and lock masters).
    redis_tls_ca_file: str = ""
    redis_tls_cert_file: str = ""
    redis_tls_key_file: str = ""
    log_level: str = "INFO"
    log_json: bool = True
    # Every network wait has a deadline; this is the default for single Redis commands.
    redis_timeout_s: float = 5.0
    # OTLP/gRPC collector (Jaeger: http://127.0.0.1:4317); empty: spans are not exported.
    otlp_endpoint: str = ""
    # Run the event loop on uvloop (campaign_common.event_loop); false: asyncio's own loop.
    uvloop: bool = True

    @field_validator("state_redis_sentinels", mode="before")
    @classmethod
    def _split_sentinels(cls, value: object) -> object:
        return split_sentinels(value)

    @field_validator("state_redis_sentinels")
    @classmethod
    def _sentinel_addresses(cls, value: list[str]) -> list[str]:
        for entry in value:
            parse_sentinel(entry)
        return value

    @model_validator(mode="after")
    def _redis_topology(self) -> ServiceSettings:
        prefix = str(self.model_config.get("env_prefix", "")).upper()
        problems = self.state_topology().problems(prefix)
        problems += self.tls_files().problems(prefix)
        for setting, url in self.other_redis_urls():
            problems += url_problems(url, f"{prefix}{setting}")
        urls = [self.state_redis_url, *(url for _, url in self.other_redis_urls())]
        if self.tls_files().configured and not any(u.startswith("rediss://") for u in urls):
            problems.append(
                f"{prefix}REDIS_TLS_* files are set but no Redis URL of this service uses "
                "rediss://: use rediss:// URLs (or remove the files)"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def other_redis_urls(self) -> list[tuple[str, str]]:
        """(setting name without prefix, URL) of the service's Redis URLs besides the state
        Redis (the scraper's lock masters); checked and given TLS like the state URL."""
        return []

    def tls_files(self) -> TlsFiles:
        return TlsFiles(self.redis_tls_ca_file, self.redis_tls_cert_file, self.redis_tls_key_file)

    def state_topology(self) -> RedisTopology:
        return RedisTopology(
            url=self.state_redis_url,
            mode=self.state_redis_mode,
            sentinels=tuple(parse_sentinel(entry) for entry in self.state_redis_sentinels),
            sentinel_master=self.state_redis_sentinel_master,
            tls=self.tls_files(),
        )


# Values OTEL_TRACES_EXPORTER may list; OTEL_TRACES_SAMPLER may name.
TRACE_EXPORTERS = frozenset({"otlp", "console", "none"})
TRACE_SAMPLERS = frozenset(
    {
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    }
)


class TelemetrySettings(BaseSettings):
    """The standard OpenTelemetry variables (no prefix), read the way the SDKs read them.

    A service's own ``<PREFIX>_OTLP_ENDPOINT`` overrides the collector address; nothing of
    ours overrides ``OTEL_SERVICE_NAME``. Differences from the SDK defaults, on purpose: with
    no endpoint and no ``OTEL_TRACES_EXPORTER`` set, spans are not exported (a laptop without
    a collector logs nothing about one), and ``service.namespace`` defaults to ``campaigns``.
    """

    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    sdk_disabled: bool = Field(False, validation_alias="OTEL_SDK_DISABLED")
    service_name: str = Field("", validation_alias="OTEL_SERVICE_NAME")
    resource_attributes: str = Field("", validation_alias="OTEL_RESOURCE_ATTRIBUTES")
    # Comma-separated: otlp, console, none. Empty: otlp when an endpoint is set, else none.
    traces_exporter: str = Field("", validation_alias="OTEL_TRACES_EXPORTER")
    otlp_endpoint: str = Field(
        "",
        validation_alias=AliasChoices(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"
        ),
    )
    # Only OTLP over gRPC is shipped (Jaeger and every collector accept it on 4317).
    otlp_protocol: str = Field(
        "grpc",
        validation_alias=AliasChoices(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"
        ),
    )
    traces_sampler: str = Field("parentbased_always_on", validation_alias="OTEL_TRACES_SAMPLER")
    traces_sampler_arg: float = Field(1.0, ge=0, le=1, validation_alias="OTEL_TRACES_SAMPLER_ARG")

    @field_validator("resource_attributes")
    @classmethod
    def _parsable_attributes(cls, value: str) -> str:
        resource_pairs(value)
        return value

    @field_validator("traces_exporter")
    @classmethod
    def _known_exporters(cls, value: str) -> str:
        names = [name.strip().lower() for name in value.split(",") if name.strip()]
        unknown = sorted(set(names) - TRACE_EXPORTERS)
        if unknown:
            raise ValueError(
                f"OTEL_TRACES_EXPORTER: unknown exporter {', '.join(unknown)} "
                f"(known: {', '.join(sorted(TRACE_EXPORTERS))})"
            )
        return ",".join(names)

    @field_validator("traces_sampler")
    @classmethod
    def _known_sampler(cls, value: str) -> str:
        name = value.strip().lower()
        if name not in TRACE_SAMPLERS:
            raise ValueError(
                f"OTEL_TRACES_SAMPLER: unknown sampler {value!r} "
                f"(known: {', '.join(sorted(TRACE_SAMPLERS))})"
            )
        return name

    @field_validator("otlp_protocol")
    @classmethod
    def _grpc_only(cls, value: str) -> str:
        if value.strip().lower() not in ("", "grpc"):
            raise ValueError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL: {value!r} is not supported; only grpc "
                "(send to the collector's OTLP/gRPC port, 4317)"
            )
        return "grpc"

    def exporters(self, endpoint_override: str = "") -> list[str]:
        """The exporters to install, ``none`` left out."""
        names = [name for name in self.traces_exporter.split(",") if name]
        if not names:
            names = ["otlp"] if endpoint_override or self.otlp_endpoint else []
        return [name for name in names if name != "none"]


def resource_pairs(text: str) -> dict[str, str]:
    """``OTEL_RESOURCE_ATTRIBUTES`` (``k=v,k2=v2``, values percent-encoded) as a dict."""
    pairs: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"OTEL_RESOURCE_ATTRIBUTES: {item.strip()!r} is not key=value")
        pairs[key.strip()] = unquote(value.strip())
    return pairs
