"""The gateway's client of the scheduler: one gRPC channel, a deadline on every call, a client
span and W3C trace context in the metadata, and failures translated into `GatewayError`."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.trace import SpanKind

from campaign_common.observability.telemetry import (
    mark_error,
    metadata_for_current_trace,
    rpc_attributes,
    tracer,
)
from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from gateway.errors import from_rpc_error

SCHEDULER_SERVICE = api.DESCRIPTOR.services_by_name["SchedulerService"].full_name
_tracer = tracer(__name__)


class SchedulerClient:
    """``SchedulerService`` calls under ``timeout_s``; the channel is owned by the caller."""

    def __init__(self, channel: grpc.aio.Channel, timeout_s: float, token: str = "") -> None:
        self._stub = api_grpc.SchedulerServiceStub(channel)  # type: ignore[no-untyped-call]
        self._health = health_pb2_grpc.HealthStub(channel)
        self.timeout_s = timeout_s
        self._auth = [("authorization", f"Bearer {token}")] if token else []

    async def call(self, method: str, request: Message) -> Any:
        """``SchedulerService/<method>(request)``; a failure raises GatewayError."""
        rpc = getattr(self._stub, method)
        name = f"{SCHEDULER_SERVICE}/{method}"
        attributes = rpc_attributes(SCHEDULER_SERVICE, method)
        with _tracer.start_as_current_span(
            name, kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            try:
                reply = await rpc(
                    request,
                    timeout=self.timeout_s,
                    metadata=[*metadata_for_current_trace(), *self._auth],
                )
            except grpc.aio.AioRpcError as exc:
                span.set_attribute("rpc.grpc.status_code", exc.code().value[0])
                mark_error(span, exc.code().name, exc.details() or exc.code().name)
                raise from_rpc_error(exc, request, self.timeout_s) from exc
            span.set_attribute("rpc.grpc.status_code", grpc.StatusCode.OK.value[0])
            return reply

    async def open_stream(self, method: str, request: Message) -> Any:
        """Start the server-streaming ``method`` (no deadline: it lasts); once the scheduler
        accepted it. A refusal (bad request, unreachable) raises GatewayError."""
        call = getattr(self._stub, method)(
            request, metadata=[*metadata_for_current_trace(), *self._auth]
        )
        try:
            async with asyncio.timeout(self.timeout_s):
                await call.initial_metadata()
        except TimeoutError:
            call.cancel()
            raise from_rpc_error(_deadline(), request, self.timeout_s) from None
        if call.done():
            try:
                async for _ in call:
                    pass
            except grpc.aio.AioRpcError as exc:
                raise from_rpc_error(exc, request, self.timeout_s) from exc
        return call

    async def serving_status(self) -> str:
        """The scheduler's health status name (``SERVING`` when ready), or why there is none."""
        request = health_pb2.HealthCheckRequest(service=SCHEDULER_SERVICE)
        try:
            reply = await self._health.Check(request, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            return f"unreachable ({exc.code().name})"
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def _deadline() -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        grpc.StatusCode.DEADLINE_EXCEEDED, grpc.aio.Metadata(), grpc.aio.Metadata()
    )
