"""Status mapping, rich errors, deadlines and readiness through real HTTP and real gRPC.

The scheduler here is a stub grpc.aio server (`tests.gateway.stub`) told how to answer.
"""

from __future__ import annotations

import grpc
import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.gateway.stub import StubScheduler, rich_status

C = grpc.StatusCode


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (C.NOT_FOUND, 404),
        (C.ABORTED, 409),
        (C.ALREADY_EXISTS, 409),
        (C.FAILED_PRECONDITION, 400),
        (C.PERMISSION_DENIED, 403),
        (C.RESOURCE_EXHAUSTED, 429),
        (C.UNIMPLEMENTED, 501),
        (C.UNAVAILABLE, 503),
        (C.DATA_LOSS, 500),
    ],
)
async def test_scheduler_status_becomes_mapped_http_status(
    stub_scheduler: StubScheduler,
    stub_gateway: httpx.AsyncClient,
    code: grpc.StatusCode,
    status: int,
) -> None:
    stub_scheduler.abort_with = rich_status(code, f"the scheduler says {code.name}")
    response = await stub_gateway.get("/v1/schedules/s1")
    assert response.status_code == status
    assert response.json() == {
        "code": code.name,
        "message": f"the scheduler says {code.name}",
        "fieldViolations": [],
    }


async def test_scheduler_bad_request_paths_are_camel_cased(
    stub_scheduler: StubScheduler, stub_gateway: httpx.AsyncClient
) -> None:
    stub_scheduler.abort_with = rich_status(
        C.INVALID_ARGUMENT, "invalid", {"schedule_id": "is not an id"}
    )
    response = await stub_gateway.get("/v1/schedules/s1")
    assert response.status_code == 400
    assert response.json()["fieldViolations"] == [
        {"field": "scheduleId", "description": "is not an id"}
    ]


async def test_scheduler_answer_is_rendered_as_rest_json(stub_gateway: httpx.AsyncClient) -> None:
    response = await stub_gateway.get("/v1/schedules/abc")
    assert response.status_code == 200
    body = response.json()
    assert body["scheduleId"] == "abc" and body["state"] == "ACTIVE"
    assert body["schedule"]["cron"] == "0 9 * * 1" and body["createdAt"].endswith("Z")


async def test_scheduler_that_never_answers_is_504_after_the_deadline(
    stub_scheduler: StubScheduler, stub_gateway: httpx.AsyncClient
) -> None:
    response = await stub_gateway.get("/v1/schedules")
    assert stub_scheduler.entered.is_set()
    assert response.status_code == 504
    body = response.json()
    assert body["code"] == "DEADLINE_EXCEEDED" and "within 1s" in body["message"]


async def test_readyz_follows_scheduler_health(
    stub_scheduler: StubScheduler, stub_gateway: httpx.AsyncClient
) -> None:
    assert (await stub_gateway.get("/readyz")).status_code == 200
    await stub_scheduler.set_health(False)
    response = await stub_gateway.get("/readyz")
    assert response.status_code == 503 and "NOT_SERVING" in response.json()["message"]


async def test_trace_context_reaches_the_scheduler(
    stub_scheduler: StubScheduler,
    stub_gateway: httpx.AsyncClient,
    spans: InMemorySpanExporter,
) -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    traceparent = f"00-{trace_id}-b7ad6b7169203331-01"
    response = await stub_gateway.get("/v1/schedules/abc", headers={"traceparent": traceparent})
    assert response.status_code == 200
    sent = stub_scheduler.metadata["traceparent"]
    assert sent.split("-")[1] == trace_id and sent.split("-")[2] != "b7ad6b7169203331"
    finished = {span.name: span for span in spans.get_finished_spans()}
    assert len(finished) == 2, "one server span, one client span"
    server = finished["GET /v1/schedules/{scheduleId}"]
    client = finished["campaigns.v1.SchedulerService/GetSchedule"]
    assert server.context is not None and client.context is not None
    assert format(server.context.trace_id, "032x") == trace_id
    assert client.parent is not None and client.parent.span_id == server.context.span_id
    assert sent.split("-")[2] == format(client.context.span_id, "016x")
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 200
    spans.clear()
    assert (await stub_gateway.get("/healthz")).status_code == 200
    assert not spans.get_finished_spans(), "health probes are not traced"
