"""OpenTelemetry setup and W3C trace-context propagation through stream entries.

The tracer provider is installed once per process by `setup_tracing`. Exporting (OTLP to
Jaeger) is switched on by configuration in a later step; until then spans are still created
so trace ids reach logs and stream envelopes.
"""

from __future__ import annotations

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

_installed = False


def setup_tracing(service: str) -> None:
    global _installed
    if _installed:
        return
    trace.set_tracer_provider(TracerProvider(resource=Resource.create({"service.name": service})))
    _installed = True


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
