"""``/ui/runs/watch``: the scheduler's WatchRuns stream relayed to the dashboard as
Server-Sent Events, behind the dashboard's session cookie (an ``EventSource`` cannot send the
API's Bearer header). The events are those of ``GET /v1/runs:watch``; the page's script
refreshes its run table (or reloads a run page) when one arrives and polls when the stream is
unavailable.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from campaigns.v1 import scheduler_service_pb2 as api
from gateway.params import SchedulerDep
from gateway.run_watch import sse_events


def run_event_pages(router: APIRouter) -> None:
    """Register before ``/runs/{run_id}``."""

    @router.get("/runs/watch")
    async def run_events(
        scheduler: SchedulerDep,
        schedule_id: Annotated[str, Query(alias="scheduleId", max_length=256)] = "",
        campaign_id: Annotated[str, Query(alias="campaignId", max_length=256)] = "",
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=512)] = None,
    ) -> StreamingResponse:
        request = api.WatchRunsRequest(
            schedule_id=schedule_id, campaign_id=campaign_id, position=last_event_id or ""
        )
        call = await scheduler.open_stream("WatchRuns", request)
        return StreamingResponse(
            sse_events(call, request, scheduler.timeout_s),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
