"""The SDK tracer provider that records spans only while something would receive them.

With no exporter configured the SDK still builds every span in full (attributes bounded and
copied, events and links kept, the processors called at start and end) only to drop it. This
provider's spans are ids only (`opentelemetry.trace.NonRecordingSpan`) until a span processor
is registered: trace and span ids, the sampler's decision (the ``sampled`` flag) and the
trace state are the SDK's, so the W3C context a process sends on (stream envelopes, gRPC
metadata, HTTP headers) and the ids in its JSON logs are the same as with recording spans.
A processor registered later (an exporter, a test's in-memory one) turns recording on for
every tracer of the provider from then on.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.util import types
from opentelemetry.util._decorator import _agnosticcontextmanager

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)


class LeanTracerProvider(TracerProvider):
    """`TracerProvider` whose spans are recorded only once a span processor is registered."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.recording = False
        self._lean: dict[int, LeanTracer] = {}

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        super().add_span_processor(span_processor)
        self.recording = True

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: types.Attributes = None,
    ) -> trace_api.Tracer:
        inner = super().get_tracer(
            instrumenting_module_name, instrumenting_library_version, schema_url, attributes
        )
        if not hasattr(inner, "sampler"):  # the SDK is disabled: its no-op tracer
            return inner
        lean = self._lean.get(id(inner))
        if lean is None:
            lean = self._lean[id(inner)] = LeanTracer(self, inner)
        return lean


class LeanTracer(trace_api.Tracer):
    """Ids-only spans while the provider does not record, the SDK tracer's spans after."""

    def __init__(self, provider: LeanTracerProvider, inner: Any) -> None:
        self._provider = provider
        self._inner = inner
        self._sampler = inner.sampler
        self._ids = inner.id_generator

    def start_span(
        self,
        name: str,
        context: context_api.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[trace_api.Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace_api.Span:
        if self._provider.recording:
            span: trace_api.Span = self._inner.start_span(
                name, context, kind, attributes, links, start_time,
                record_exception, set_status_on_exception,
            )  # fmt: skip
            return span
        parent = trace_api.get_current_span(context).get_span_context()
        if parent.is_valid:
            trace_id = parent.trace_id
            random_id = parent.trace_flags.random_trace_id
        else:
            trace_id = self._ids.generate_trace_id()
            random_id = self._ids.is_trace_id_random()
        # The sampler decides the sampled flag as it would for a recorded span.
        sampled = self._sampler.should_sample(context, trace_id, name, kind, attributes, links)
        flags = _SAMPLED if sampled.decision.is_sampled() else _NOT_SAMPLED
        if random_id:
            flags = TraceFlags(flags | TraceFlags.RANDOM_TRACE_ID)
        ids = SpanContext(
            trace_id,
            self._ids.generate_span_id(),
            is_remote=False,
            trace_flags=flags,
            trace_state=sampled.trace_state,
        )
        return NonRecordingSpan(ids)

    @_agnosticcontextmanager
    def start_as_current_span(
        self,
        name: str,
        context: context_api.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[trace_api.Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace_api.Span]:
        span = self.start_span(
            name, context, kind, attributes, links, start_time,
            record_exception, set_status_on_exception,
        )  # fmt: skip
        with trace_api.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current
