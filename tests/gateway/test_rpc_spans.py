"""gRPC spans through the real gateway and the real scheduler: one name on both sides, rpc.*
attributes, and a NOT_FOUND answer that is the caller's error, not the server's."""

from __future__ import annotations

import httpx
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

NAME = "campaigns.v1.SchedulerService/GetSchedule"


async def test_rpc_spans_match_on_both_sides_and_not_found_is_no_server_error(
    gateway: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    response = await gateway.get("/v1/schedules/nope")
    assert response.status_code == 404 and "nope" in response.json()["message"]

    by_kind = {span.kind: span for span in spans.get_finished_spans() if span.name == NAME}
    server, client = by_kind[SpanKind.SERVER], by_kind[SpanKind.CLIENT]
    assert server.parent is not None and client.context is not None
    assert server.parent.span_id == client.context.span_id
    for span in (server, client):
        attributes = dict(span.attributes or {})
        assert attributes["rpc.system"] == "grpc"
        assert attributes["rpc.service"] == "campaigns.v1.SchedulerService"
        assert attributes["rpc.method"] == "GetSchedule"
        assert attributes["rpc.grpc.status_code"] == 5  # NOT_FOUND
    assert server.status.status_code is StatusCode.UNSET  # the server did its job
    assert client.status.status_code is StatusCode.ERROR  # the call did not get its answer
