"""Envelopes stamped with a span's W3C headers carry what the propagator would inject."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import DEFAULT_ON
from opentelemetry.trace import INVALID_SPAN_CONTEXT

from campaign_common.envelope import span_headers, wrap
from campaign_common.observability.telemetry import context_from_headers, current_trace_headers
from campaign_common.observability.tracer_provider import LeanTracerProvider
from campaigns.v1 import events_pb2

SENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_envelope_span_headers_are_what_the_propagator_injects() -> None:
    provider = LeanTracerProvider(sampler=DEFAULT_ON, shutdown_on_exit=False)
    tracer = provider.get_tracer("test")
    for parent in (context_from_headers(SENT, "k=v,other=1"), context_from_headers(SENT, "")):
        span = tracer.start_span("send", context=parent)
        with trace.use_span(span):
            injected = current_trace_headers()
        assert span_headers(span.get_span_context()) == injected
        assert injected[0].startswith("00-0af7651916cd43dd8448eb211c80319c-")
        envelope = wrap(events_pb2.RunRequested(run_id="r1"), trace_headers=injected)
        assert (envelope.traceparent, envelope.tracestate) == injected
    assert span_headers(INVALID_SPAN_CONTEXT) == ("", "")
