"""A real grpc.aio SchedulerService whose answers the test chooses (status codes, hangs).

Used where the real scheduler cannot be made to answer a given way on demand: every status
code, a rich status on any method, a call that never answers (deadlines), health states.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from campaign_common.timeutil import ms_to_timestamp
from campaigns.v1 import schedule_pb2
from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc

SERVICE = api.DESCRIPTOR.services_by_name["SchedulerService"].full_name


def rich_status(
    code: grpc.StatusCode, message: str, violations: dict[str, str] | None = None
) -> grpc.Status:
    """A google.rpc.Status as the scheduler sends it, with BadRequest field violations."""
    status = status_pb2.Status(code=code.value[0], message=message)
    if violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                for f, d in violations.items()
            ]
        )
        status.details.add().Pack(bad)
    return rpc_status.to_status(status)


def sample_schedule(schedule_id: str = "s1") -> schedule_pb2.Schedule:
    return schedule_pb2.Schedule(
        schedule_id=schedule_id,
        campaign_id="spring-leads",
        name="Spring leads",
        spec=schedule_pb2.ScheduleSpec(cron="0 9 * * 1", timezone="Europe/Berlin"),
        scrape=schedule_pb2.ScrapeSpec(urls=["http://example.test/"], selectors={"t": "h1"}),
        version=1,
        state=schedule_pb2.SCHEDULE_STATE_ACTIVE,
        limits=schedule_pb2.RunLimits(
            overlap=schedule_pb2.OVERLAP_POLICY_BUFFER_ONE, max_runs_per_window=2, window_seconds=60
        ),
        created_at=ms_to_timestamp(1_767_258_000_000),
        updated_at=ms_to_timestamp(1_767_258_000_000),
    )


class StubScheduler(api_grpc.SchedulerServiceServicer):
    """GetSchedule records its metadata and answers ``abort_with`` if set, else a schedule;
    ListSchedules hangs until ``release`` is set (then answers an empty page)."""

    def __init__(self) -> None:
        self.abort_with: grpc.Status | None = None
        self.release = asyncio.Event()
        self.entered = asyncio.Event()
        self.health = health.aio.HealthServicer()
        self.target = ""
        self.metadata: dict[str, str] = {}  # of the last GetSchedule call

    async def GetSchedule(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self.metadata = {
            key: value
            for key, value in context.invocation_metadata() or ()
            if isinstance(value, str)
        }
        if self.abort_with is not None:
            status = self.abort_with
            await context.abort(status.code, status.details, status.trailing_metadata)
        return sample_schedule(request.schedule_id)

    async def ListSchedules(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self.entered.set()
        await self.release.wait()
        return api.ListSchedulesResponse()

    async def set_health(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self.health.set(SERVICE, status)


@asynccontextmanager
async def running_stub() -> AsyncIterator[StubScheduler]:
    stub = StubScheduler()
    server = grpc.aio.server()
    api_grpc.add_SchedulerServiceServicer_to_server(stub, server)  # type: ignore[no-untyped-call]
    health_pb2_grpc.add_HealthServicer_to_server(stub.health, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await stub.set_health(True)
    stub.target = f"127.0.0.1:{port}"
    try:
        yield stub
    finally:
        stub.release.set()
        await server.stop(0)
