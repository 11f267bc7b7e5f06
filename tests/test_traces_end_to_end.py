"""One trace per run across real processes, exported to a real OTLP receiver.

A scheduler and a scraper run as separate processes with nothing but standard OpenTelemetry
variables set (``OTEL_EXPORTER_OTLP_ENDPOINT``, and ``OTEL_BSP_SCHEDULE_DELAY`` so batches go
out quickly). The receiver is this test's gRPC server. For a run that succeeds, one that
fails for good and one that is retried and then dead-lettered, the spans form:

    scheduler  send (PRODUCER, messaging.*, run/schedule/campaign ids)
    scraper    └─ process (CONSUMER; parent and link: send)
                  ├─ acquire lock (lock.fence)
                  ├─ GET (CLIENT, http.request.method, server.address, status code)
                  ├─ write results (a failed attempt's; a success stores them with its outcome)
                  └─ record outcome (pages)
    retry      process (CONSUMER, attempt 2, a root span linked to attempt 1's process)
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import grpc
import pytest

from campaigns.v1 import schedule_pb2
from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.support import (
    PageServer,
    ServiceProcess,
    eventually,
    scraper_process,
    start_scheduler_process,
)

pytestmark = pytest.mark.slow

PRODUCER, CONSUMER, CLIENT = 4, 5, 3  # opentelemetry.proto Span.SpanKind values
BOUNDED_NAMES = {"send", "process", "acquire lock", "GET", "write results", "record outcome"}


@pytest.fixture
def pages() -> Iterator[PageServer]:
    served = {"/ok": (200, "<h1>ok</h1>"), "/gone": (404, "gone"), "/flaky": (503, "busy")}
    with PageServer(served) as server:
        yield server


@pytest.fixture(autouse=True)
def standard_variables_only(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [key for key in os.environ if key.startswith("OTEL_")]:
        monkeypatch.delenv(name)


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    async with OtlpReceiver() as running:
        yield running


@dataclass
class Stack:
    target: str
    scraper: ServiceProcess


@pytest.fixture
async def stack(
    receiver: OtlpReceiver, state_url: str, lock_urls: list[str]
) -> AsyncIterator[Stack]:
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    scheduler, target = await start_scheduler_process(state_url, **otel)
    scraper = scraper_process(state_url, lock_urls, "traced", **otel)
    try:
        yield Stack(target, scraper)
    finally:
        for process in (scraper, scheduler):
            process.terminate()
            process.close()


def _schedule(name: str, url: str, attempts: int = 1) -> api.AddScheduledCampaignRequest:
    return api.AddScheduledCampaignRequest(
        name=name,
        schedule=schedule_pb2.ScheduleSpec(interval_seconds=3600),
        scrape=schedule_pb2.ScrapeSpec(urls=[url], selectors={"title": "h1"}),
        retry_policy=schedule_pb2.RetryPolicy(
            max_attempts=attempts, initial_delay_seconds=0.1, max_delay_seconds=0.2
        ),
    )


def _children(receiver: OtlpReceiver, parent: ReceivedSpan) -> dict[str, ReceivedSpan]:
    return {
        span.name: span
        for span in receiver.spans
        if span.parent_id == parent.span_id and span.trace_id == parent.trace_id
    }


async def _trigger(target: str, request: api.AddScheduledCampaignRequest) -> str:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = api_grpc.SchedulerServiceStub(channel)  # type: ignore[no-untyped-call]
        created = await stub.AddScheduledCampaign(request, timeout=5)
        reply = await stub.TriggerCampaign(
            api.TriggerCampaignRequest(schedule_id=created.schedule_id), timeout=5
        )
        return str(reply.run_id)


async def _process_span(
    receiver: OtlpReceiver, run_id: str, attempt: int = 1, error_type: str | None = None
) -> ReceivedSpan:
    async def found() -> ReceivedSpan | None:
        for span in receiver.named("process", **{"run.id": run_id, "run.attempt": attempt}):
            if error_type is None or span.attributes.get("error.type") == error_type:
                return span
        return None

    return await eventually(found, timeout_s=30, what=f"process span of {run_id} #{attempt}")


def _assert_continues_send(receiver: OtlpReceiver, process: ReceivedSpan) -> ReceivedSpan:
    [send] = [s for s in receiver.named("send") if s.span_id == process.parent_id]
    assert send.service == "scheduler" and send.kind == PRODUCER
    assert process.service == "scraper" and process.kind == CONSUMER
    assert send.trace_id == process.trace_id
    assert (send.trace_id, send.span_id) in process.links
    for key in ("run.id", "schedule.id", "campaign.id", "messaging.destination.name"):
        assert send.attributes[key] == process.attributes[key], key
    assert send.attributes["messaging.system"] == "redis"
    assert send.attributes["messaging.message.id"] == process.attributes["run.id"]
    return send


async def test_a_succeeded_run_is_one_trace_from_send_to_fetch(
    receiver: OtlpReceiver, stack: Stack, pages: PageServer
) -> None:
    run_id = await _trigger(stack.target, _schedule("traced ok", pages.url("/ok")))
    process = await _process_span(receiver, run_id)
    _assert_continues_send(receiver, process)
    assert not process.is_error
    children = await eventually(
        lambda: _ready(_children(receiver, process), "acquire lock", "GET", "record outcome"),
        what="lock, fetch and outcome spans",
    )
    assert "write results" not in children  # a success's results go with its outcome
    assert children["record outcome"].attributes["pages"] == 1
    fetch = children["GET"]
    assert fetch.kind == CLIENT and not fetch.is_error
    assert fetch.attributes["http.request.method"] == "GET"
    assert fetch.attributes["http.response.status_code"] == 200
    assert fetch.attributes["server.address"] == "127.0.0.1"
    assert children["acquire lock"].attributes["lock.fence"] >= 1
    assert {span.name for span in receiver.spans} <= BOUNDED_NAMES | _rpc_names(receiver)
    # The scraper's JSON log lines of the run carry its service, trace and run ids.
    lines = [json.loads(line) for line in stack.scraper.logs().splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("run_id") == run_id]
    assert mine and all(line["service"] == "scraper" for line in mine)
    assert any(line.get("trace_id") == process.trace_id for line in mine)


async def test_a_failed_run_marks_the_process_and_fetch_spans_as_errors(
    receiver: OtlpReceiver, stack: Stack, pages: PageServer
) -> None:
    run_id = await _trigger(stack.target, _schedule("traced gone", pages.url("/gone")))
    process = await _process_span(receiver, run_id, error_type="failed")
    _assert_continues_send(receiver, process)
    assert process.is_error
    children = await eventually(
        lambda: _ready(_children(receiver, process), "GET"), what="the fetch span"
    )
    assert children["GET"].is_error and children["GET"].attributes["error.type"] == "404"


async def test_a_retried_attempt_links_to_the_attempt_before_instead_of_nesting(
    receiver: OtlpReceiver, stack: Stack, pages: PageServer
) -> None:
    run_id = await _trigger(
        stack.target, _schedule("traced flaky", pages.url("/flaky"), attempts=2)
    )
    first = await _process_span(receiver, run_id, 1, error_type="retry_scheduled")
    _assert_continues_send(receiver, first)
    second = await _process_span(receiver, run_id, 2, error_type="dead_lettered")
    assert second.parent_id == "" and second.trace_id != first.trace_id
    assert (first.trace_id, first.span_id) in second.links
    assert first.is_error and second.is_error
    # An operator retries the dead letter: the next attempt links to the parked one, not to
    # the operator's call.
    async with grpc.aio.insecure_channel(stack.target) as channel:
        stub = api_grpc.SchedulerServiceStub(channel)  # type: ignore[no-untyped-call]
        listed = await stub.ListDeadLetters(api.ListDeadLettersRequest(page_size=10), timeout=5)
        [letter] = [d for d in listed.dead_letters if d.run_id == run_id]
        await stub.RetryDeadLetter(api.RetryDeadLetterRequest(id=letter.id), timeout=5)
    third = await _process_span(receiver, run_id, 3)
    assert third.parent_id == "" and third.trace_id != second.trace_id
    assert (second.trace_id, second.span_id) in third.links


async def _ready(children: dict[str, ReceivedSpan], *names: str) -> dict[str, ReceivedSpan] | None:
    return children if all(name in children for name in names) else None


def _rpc_names(receiver: OtlpReceiver) -> set[str]:
    """gRPC spans are named ``campaigns.v1.SchedulerService/<Method>`` on both sides."""
    return {
        span.name
        for span in receiver.spans
        if span.name.startswith("campaigns.v1.SchedulerService/")
    }
