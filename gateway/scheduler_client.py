"""The gateway's client of the scheduler: one gRPC channel, a deadline on every call, a client
span and W3C trace context in the metadata, and failures translated into `GatewayError`."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.trace import SpanKind, StatusCode

from campaign_common.telemetry import metadata_for_current_trace, tracer
from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from gateway.errors import from_rpc_error

SCHEDULER_SERVICE = api.DESCRIPTOR.services_by_name["SchedulerService"].full_name
_tracer = tracer(__name__)


class SchedulerClient:
    """``SchedulerService`` calls under ``timeout_s``; the channel is owned by the caller."""

    def __init__(self, channel: grpc.aio.Channel, timeout_s: float) -> None:
        self._stub = api_grpc.SchedulerServiceStub(channel)  # type: ignore[no-untyped-call]
        self._health = health_pb2_grpc.HealthStub(channel)
        self.timeout_s = timeout_s

    async def call(self, method: str, request: Message) -> Any:
        """``SchedulerService/<method>(request)``; a failure raises GatewayError."""
        rpc = getattr(self._stub, method)
        name = f"{SCHEDULER_SERVICE}/{method}"
        with _tracer.start_as_current_span(name, kind=SpanKind.CLIENT) as span:
            try:
                return await rpc(
                    request, timeout=self.timeout_s, metadata=metadata_for_current_trace()
                )
            except grpc.aio.AioRpcError as exc:
                span.set_status(StatusCode.ERROR, exc.code().name)
                raise from_rpc_error(exc, request, self.timeout_s) from exc

    async def serving_status(self) -> str:
        """The scheduler's health status name (``SERVING`` when ready), or why there is none."""
        request = health_pb2.HealthCheckRequest(service=SCHEDULER_SERVICE)
        try:
            reply = await self._health.Check(request, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            return f"unreachable ({exc.code().name})"
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
