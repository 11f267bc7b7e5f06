"""``GET /v1/runs:watch``: WatchRuns as Server-Sent Events.

Each change is one event ``run`` whose ``data`` is the run (as ``GET /v1/runs/{runId}``) and
whose ``id`` is its position: a client that reconnects with ``Last-Event-ID`` (browsers do it
on their own) or ``?position=`` continues after it. A refused watch (bad position, scheduler
down) is an ordinary JSON error before the stream starts; an error during the stream ends it
with an event ``error`` carrying the JSON error body.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from campaigns.v1 import scheduler_service_pb2 as api
from gateway import convert
from gateway.errors import from_rpc_error
from gateway.params import OPAQUE, CampaignIdFilter, ScheduleIdFilter, SchedulerDep


def _event(kind: str, data: dict[str, Any], event_id: str = "") -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data)}\n\n"


async def sse_events(
    call: Any, request: api.WatchRunsRequest, timeout_s: float
) -> AsyncIterator[str]:
    """The WatchRuns call's replies as SSE events (also relayed by the dashboard)."""
    try:
        async for reply in call:
            yield _event("run", convert.run_to_json(reply.run), reply.position)
    except grpc.aio.AioRpcError as exc:
        yield _event("error", from_rpc_error(exc, request, timeout_s).body())
    finally:
        call.cancel()


def watch_routes(router: APIRouter) -> None:
    @router.get(
        "/v1/runs:watch",
        response_class=StreamingResponse,
        summary="Run changes as Server-Sent Events (resumable with Last-Event-ID)",
        responses={200: {"content": {"text/event-stream": {}}, "description": "event stream"}},
    )
    async def watch_runs(
        scheduler: SchedulerDep,
        schedule_id: ScheduleIdFilter = "",
        campaign_id: CampaignIdFilter = "",
        position: Annotated[str, Query(max_length=512, json_schema_extra=OPAQUE)] = "",
        last_event_id: Annotated[
            str | None, Header(alias="Last-Event-ID", max_length=512, json_schema_extra=OPAQUE)
        ] = None,
    ) -> StreamingResponse:
        request = api.WatchRunsRequest(
            schedule_id=schedule_id, campaign_id=campaign_id, position=last_event_id or position
        )
        call = await scheduler.open_stream("WatchRuns", request)
        return StreamingResponse(
            sse_events(call, request, scheduler.timeout_s),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
