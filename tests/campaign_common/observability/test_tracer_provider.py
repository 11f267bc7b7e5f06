"""The tracer provider records spans only while a span processor is registered; the trace
context it propagates is the same either way."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, DEFAULT_ON
from opentelemetry.trace import NonRecordingSpan, SpanKind

from campaign_common.observability.telemetry import context_from_headers, current_trace_headers
from campaign_common.observability.tracer_provider import LeanTracerProvider

SENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
SENT_UNSAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


@pytest.fixture
def provider() -> Iterator[LeanTracerProvider]:
    made = LeanTracerProvider(sampler=DEFAULT_ON, shutdown_on_exit=False)
    yield made
    made.shutdown()


def test_without_a_processor_spans_carry_ids_but_record_nothing(
    provider: LeanTracerProvider,
) -> None:
    tracer = provider.get_tracer("test")
    with (
        tracer.start_as_current_span("process", attributes={"run.id": "r1"}) as root,
        tracer.start_as_current_span("GET", kind=SpanKind.CLIENT) as child,
    ):
        traceparent, _ = current_trace_headers()
    assert isinstance(root, NonRecordingSpan) and not root.is_recording()
    ids, child_ids = root.get_span_context(), child.get_span_context()
    assert ids.is_valid and child_ids.is_valid
    assert child_ids.trace_id == ids.trace_id and child_ids.span_id != ids.span_id
    # Sampled (the sampler said so) with a random trace id, as the SDK's recorded spans.
    assert ids.trace_flags == child_ids.trace_flags == 0x03
    # What goes out to the next process names the current span.
    assert traceparent == f"00-{ids.trace_id:032x}-{child_ids.span_id:016x}-03"


def test_a_remote_parent_is_continued_with_its_sampling_decision(
    provider: LeanTracerProvider,
) -> None:
    tracer = provider.get_tracer("test")
    for sent, sampled in ((SENT, True), (SENT_UNSAMPLED, False)):
        span = tracer.start_span("process", context=context_from_headers(sent, "k=v"))
        ids = span.get_span_context()
        assert f"{ids.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
        assert ids.span_id != 0xB7AD6B7169203331
        assert ids.trace_flags.sampled is sampled
        assert ids.trace_state.get("k") == "v"


def test_an_always_off_sampler_still_gives_ids_to_propagate() -> None:
    provider = LeanTracerProvider(sampler=ALWAYS_OFF, shutdown_on_exit=False)
    span = provider.get_tracer("test").start_span("send")
    assert span.get_span_context().is_valid
    assert not span.get_span_context().trace_flags.sampled


def test_a_processor_added_later_records_spans_of_tracers_made_before(
    provider: LeanTracerProvider,
) -> None:
    tracer = provider.get_tracer("early")
    with tracer.start_as_current_span("before"):
        pass
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with tracer.start_as_current_span("after", attributes={"pages": 2}) as span:
        assert span.is_recording()
        with provider.get_tracer("late").start_as_current_span("child"):
            pass
    finished: dict[str, ReadableSpan] = {s.name: s for s in exporter.get_finished_spans()}
    assert set(finished) == {"after", "child"}
    assert finished["after"].attributes == {"pages": 2}
    after_ids = finished["after"].context
    assert after_ids is not None and finished["child"].parent == after_ids


def test_the_session_provider_is_the_lean_one() -> None:
    # tests/conftest.py installs what every service process installs (setup_tracing).
    assert isinstance(trace.get_tracer_provider(), LeanTracerProvider)
