"""OpenTelemetry setup and W3C trace-context propagation through gRPC metadata and streams.

`setup_tracing` installs the tracer provider once per process from the standard ``OTEL_*``
variables (`campaign_common.settings.TelemetrySettings`): service name and resource
attributes, sampler, exporters, collector endpoint (a service's ``<PREFIX>_OTLP_ENDPOINT``
overrides the endpoint only). ``OTEL_SDK_DISABLED=true`` installs nothing: spans are no-ops.
Otherwise spans exist whether or not they are exported, so trace ids reach JSON logs and the
``traceparent`` field of every stream envelope; with no exporter they are ids only, never
recorded (`campaign_common.observability.tracer_provider`).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable
from importlib import metadata

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import Span, Status, StatusCode

from campaign_common.observability.trace_export import OutageLoggingExporter
from campaign_common.observability.tracer_provider import LeanTracerProvider
from campaign_common.settings import TelemetrySettings, resource_pairs

DEFAULT_NAMESPACE = "campaigns"
DEFAULT_OTLP_ENDPOINT = "http://localhost:4317"
_OTLP_LOGGER = "opentelemetry.exporter.otlp.proto.grpc.exporter"
_installed = False


def setup_tracing(
    service: str, otlp_endpoint: str = "", telemetry: TelemetrySettings | None = None
) -> str:
    """Install the process's tracer provider (once); returns the service name in use.

    ``service`` is the default name (``OTEL_SERVICE_NAME`` wins); ``otlp_endpoint`` the
    service's own collector setting (wins over ``OTEL_EXPORTER_OTLP_ENDPOINT``).
    """
    global _installed
    telemetry = telemetry if telemetry is not None else TelemetrySettings()
    resource = build_resource(service, telemetry)
    name = str(resource.attributes["service.name"])
    if _installed or telemetry.sdk_disabled:
        return name
    provider = LeanTracerProvider(resource=resource, sampler=build_sampler(telemetry))
    for exporter in build_exporters(telemetry, otlp_endpoint):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _installed = True
    return name


def build_resource(service: str, telemetry: TelemetrySettings) -> Resource:
    attributes: dict[str, str] = {
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": _version("opentelemetry-sdk"),
        "service.namespace": DEFAULT_NAMESPACE,
        "service.version": _version("campaign-platform"),
        "service.instance.id": f"{socket.gethostname()}-{os.getpid()}",
    }
    attributes.update(resource_pairs(telemetry.resource_attributes))
    attributes["service.name"] = telemetry.service_name or attributes.get("service.name") or service
    return Resource(attributes)


def build_sampler(telemetry: TelemetrySettings) -> Sampler:
    ratio = telemetry.traces_sampler_arg
    samplers: dict[str, Sampler] = {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "parentbased_always_on": DEFAULT_ON,
        "parentbased_always_off": DEFAULT_OFF,
        "traceidratio": TraceIdRatioBased(ratio),
        "parentbased_traceidratio": ParentBasedTraceIdRatio(ratio),
    }
    return samplers[telemetry.traces_sampler]


def build_exporters(telemetry: TelemetrySettings, endpoint_override: str) -> list[SpanExporter]:
    exporters: list[SpanExporter] = []
    for name in telemetry.exporters(endpoint_override):
        if name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append(ConsoleSpanExporter())
        elif name == "otlp":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            # It logs an ERROR per failed batch; OutageLoggingExporter reports outages instead.
            logging.getLogger(_OTLP_LOGGER).setLevel(logging.CRITICAL)
            endpoint = endpoint_override or telemetry.otlp_endpoint or DEFAULT_OTLP_ENDPOINT
            exporters.append(OutageLoggingExporter(OTLPSpanExporter(endpoint=endpoint), endpoint))
    return exporters


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def mark_error(span: Span, error_type: str, message: str = "") -> None:
    """Span status ERROR with the semantic ``error.type`` (a bounded name, never an id)."""
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, message or None))


def rpc_attributes(service: str, method: str) -> dict[str, str]:
    """``rpc.*`` attributes of a gRPC span (``service`` in full: ``campaigns.v1.X``)."""
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}


def current_trace_headers() -> tuple[str, str]:
    """(traceparent, tracestate) of the current span, empty strings when there is none."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent", ""), carrier.get("tracestate", "")


def context_from_headers(traceparent: str, tracestate: str) -> context.Context:
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    return propagate.extract(carrier)


def context_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> context.Context:
    """Trace context sent by a gRPC caller in its invocation metadata."""
    carrier = {
        key: value.decode() if isinstance(value, bytes) else value
        for key, value in metadata or ()
        if key in ("traceparent", "tracestate")
    }
    return propagate.extract(carrier)


def metadata_for_current_trace() -> list[tuple[str, str]]:
    """gRPC metadata carrying the current trace context to the callee."""
    traceparent, tracestate = current_trace_headers()
    pairs = [("traceparent", traceparent)] if traceparent else []
    if tracestate:
        pairs.append(("tracestate", tracestate))
    return pairs
