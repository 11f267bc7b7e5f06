"""The spans of a run on the scraper side and their attributes (bounded names, no ids).

Log lines written while a run is processed carry its ``run_id`` (`run_logging`).

``process`` (CONSUMER) is a run attempt taken from the runs stream. The first attempt
continues the trace its producer (the scheduler's ``send``) started: the producer's span is
its parent and also a link. A later attempt (a retry after a failure, a dead letter retried by
an operator) starts a trace of its own and links to the attempt before it, so attempts sit
side by side instead of nesting into each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind

from campaign_common.observability.logs import run_logging
from campaign_common.observability.telemetry import context_from_headers, tracer
from campaign_common.runs.keys import SCRAPER_GROUP, partition
from scraper_svc.model import RunRequest

_tracer = tracer(__name__)


def process_attributes(request: RunRequest, consumer: str) -> dict[str, str | int]:
    return {
        "messaging.system": "redis",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": partition(request.partition).runs_stream,
        "messaging.consumer.group.name": SCRAPER_GROUP,
        "messaging.message.id": request.run_id,
        "messaging.client.id": consumer,
        "run.id": request.run_id,
        "run.attempt": request.attempt,
        "run.deliveries": request.deliveries,
        "schedule.id": request.schedule_id,
        "campaign.id": request.campaign_id,
    }


@contextmanager
def process_span(request: RunRequest, consumer: str) -> Iterator[Span]:
    """The CONSUMER span ``process`` of one run attempt, current while the block runs."""
    sent = context_from_headers(request.traceparent, request.tracestate)
    sender = trace.get_current_span(sent).get_span_context()
    links = [Link(sender)] if sender.is_valid else []
    parent = sent if request.attempt <= 1 else Context()
    with (
        _tracer.start_as_current_span(
            "process",
            context=parent,
            kind=SpanKind.CONSUMER,
            links=links,
            attributes=process_attributes(request, consumer),
        ) as span,
        run_logging(request.run_id),
    ):
        yield span
