"""OpenTelemetry setup and W3C trace-context propagation through gRPC metadata and streams.

`setup_tracing` installs the tracer provider once per process; spans are exported over OTLP
(gRPC) when an endpoint is configured (Jaeger accepts OTLP on 4317). Spans exist either way,
so trace ids reach JSON logs and the ``traceparent`` field of every stream envelope.
"""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

_installed = False


def setup_tracing(service: str, otlp_endpoint: str = "") -> None:
    global _installed
    if _installed:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint, insecure=True))
        )
    trace.set_tracer_provider(provider)
    _installed = True


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


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
