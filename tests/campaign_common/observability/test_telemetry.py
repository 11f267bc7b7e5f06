"""Tracing set up from the standard OTEL_* variables, exported to a real OTLP/gRPC receiver.

Each case runs a fresh Python process (the tracer provider is per process) with nothing but
the environment given, makes one span and exits; the receiver is the test's own server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from pydantic import ValidationError

from campaign_common.observability.telemetry import build_resource
from campaign_common.observability.trace_export import OutageLoggingExporter
from campaign_common.settings import TelemetrySettings
from tests.otlp_receiver import OtlpReceiver
from tests.support import ROOT

SCRIPT = """
import sys
from opentelemetry import trace
from campaign_common.observability.telemetry import setup_tracing, tracer
name = setup_tracing("scheduler", sys.argv[1])
with tracer("probe").start_as_current_span("probe"):
    pass
provider = trace.get_tracer_provider()
getattr(provider, "shutdown", lambda: None)()
print(name)
"""


def _clean_env(**env: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return {**base, **env}


async def _run_probe(env: dict[str, str], override: str = "") -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SCRIPT,
        override,
        env=_clean_env(**env),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode().strip()


async def test_standard_variables_alone_export_with_their_service_name_and_attributes() -> None:
    async with OtlpReceiver() as receiver:
        name = await _run_probe(
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                "OTEL_SERVICE_NAME": "orders-scheduler",
                "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=test,team=growth%20ops",
            }
        )
        # The provider's shutdown flushed before the process exited: the span is here.
        [span] = receiver.named("probe")
    assert name == "orders-scheduler"
    assert span.service == "orders-scheduler"
    assert span.resource["service.namespace"] == "campaigns"
    assert span.resource["deployment.environment.name"] == "test"
    assert span.resource["team"] == "growth ops"


async def test_the_service_endpoint_setting_overrides_only_the_endpoint() -> None:
    async with OtlpReceiver() as receiver:
        name = await _run_probe(
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
                "OTEL_RESOURCE_ATTRIBUTES": "service.namespace=shop",
            },
            override=receiver.endpoint,
        )
        [span] = receiver.named("probe")
    assert name == "scheduler"  # the default name when OTEL_SERVICE_NAME is unset
    assert span.resource["service.namespace"] == "shop"


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_SDK_DISABLED": "true"},
        {"OTEL_TRACES_EXPORTER": "none"},
        {"OTEL_TRACES_SAMPLER": "always_off"},
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"},
    ],
    ids=["sdk-disabled", "exporter-none", "always-off", "ratio-zero"],
)
async def test_standard_variables_that_turn_export_off_are_honoured(env: dict[str, str]) -> None:
    async with OtlpReceiver() as receiver:
        await _run_probe({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, **env})
        # The process has exited (its provider shut down): nothing more can arrive.
        assert receiver.spans == []


def test_without_an_endpoint_or_exporter_nothing_is_exported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [key for key in os.environ if key.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    assert TelemetrySettings().exporters() == []
    assert TelemetrySettings(traces_exporter="").exporters("http://jaeger:4317") == ["otlp"]
    assert TelemetrySettings(traces_exporter="otlp").exporters() == ["otlp"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_TRACES_EXPORTER", "zipkin"),
        ("OTEL_TRACES_SAMPLER", "sometimes"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_RESOURCE_ATTRIBUTES", "novalue"),
    ],
)
def test_invalid_standard_variables_are_refused_naming_the_variable(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=variable):
        TelemetrySettings()


def test_resource_name_prefers_otel_service_name_then_the_attribute_then_the_default() -> None:
    def name(**fields: str) -> object:
        telemetry = TelemetrySettings.model_validate(fields)
        return build_resource("gateway", telemetry).attributes["service.name"]

    assert name() == "gateway"
    assert name(resource_attributes="service.name=api") == "api"
    assert name(resource_attributes="service.name=api", service_name="edge") == "edge"


class _Collector(SpanExporter):
    def __init__(self) -> None:
        self.result = SpanExportResult.FAILURE

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.result


def test_an_unreachable_collector_is_logged_once_per_outage_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inner = _Collector()
    exporter = OutageLoggingExporter(inner, "http://jaeger:4317")
    spans: list[ReadableSpan] = []
    with caplog.at_level(logging.INFO, logger="campaign_common.observability.trace_export"):
        for _ in range(5):
            exporter.export(spans)
        inner.result = SpanExportResult.SUCCESS
        exporter.export(spans)
        exporter.export(spans)
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2, messages
    assert caplog.records[0].levelno == logging.WARNING and "unreachable" in messages[0]
    assert "reachable again; 5 exports" in messages[1]
