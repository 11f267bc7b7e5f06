"""Prometheus metrics of a grpc.aio server: requests by method and code, errors, latency.

`ServerMetrics` holds the three metric families; `MetricsInterceptor` fills them for every
call of the server it is installed on. Every method of the given services is initialised
when the interceptor is built (``code="OK"`` and the error counter at 0), so ``rate()`` and
absence-based alerts work from start-up. Server errors are the codes that mean the server
failed (UNKNOWN, INTERNAL, UNAVAILABLE, DEADLINE_EXCEEDED, DATA_LOSS, UNIMPLEMENTED); a
NOT_FOUND or INVALID_ARGUMENT answer is the caller's problem and counts as a request only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from prometheus_client import Counter, Histogram

SERVER_ERROR_CODES = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.DATA_LOSS,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)


@dataclass(frozen=True)
class ServerMetrics:
    requests: Counter
    errors: Counter
    latency: Histogram

    @classmethod
    def declare(cls, prefix: str) -> ServerMetrics:
        """``<prefix>_grpc_requests_total{method,code}``, ``<prefix>_grpc_errors_total{method}``
        and ``<prefix>_grpc_request_duration_seconds{method}``."""
        return cls(
            Counter(
                f"{prefix}_grpc_requests_total",
                "gRPC calls handled, by method and status code",
                ["method", "code"],
            ),
            Counter(
                f"{prefix}_grpc_errors_total",
                "gRPC calls that ended in a server error (UNKNOWN, INTERNAL, UNAVAILABLE, "
                "DEADLINE_EXCEEDED, DATA_LOSS, UNIMPLEMENTED), by method",
                ["method"],
            ),
            Histogram(
                f"{prefix}_grpc_request_duration_seconds",
                "Time to handle a gRPC call (a stream: until it ended), by method",
                ["method"],
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            ),
        )

    def initialise(self, methods: Iterable[str]) -> None:
        for method in methods:
            self.requests.labels(method=method, code="OK")
            self.errors.labels(method=method)
            self.latency.labels(method=method)

    def observe(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        self.requests.labels(method=method, code=code.name).inc()
        if code in SERVER_ERROR_CODES:
            self.errors.labels(method=method).inc()
        self.latency.labels(method=method).observe(seconds)


def method_names(services: Iterable[ServiceDescriptor]) -> list[str]:
    return [method.name for service in services for method in service.methods]


def _code(context: Any, failed: BaseException | None) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):  # some grpc versions keep the raw number
        return next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
    if failed is None:
        return grpc.StatusCode.OK
    if isinstance(failed, asyncio.CancelledError | GeneratorExit):
        return grpc.StatusCode.CANCELLED  # the caller went away (a watch that was closed)
    return grpc.StatusCode.UNKNOWN


class MetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, metrics: ServerMetrics, services: Iterable[ServiceDescriptor]) -> None:
        self._metrics = metrics
        self._methods = frozenset(method_names(services))
        metrics.initialise(self._methods)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = str(handler_call_details.method).rsplit("/", 1)[-1]
        if handler is None or method not in self._methods:
            return handler  # health, reflection and unknown methods are not counted
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(method, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _unary(self, method: str, behaviour: Any) -> Any:
        async def call(request: Any, context: Any) -> Any:
            started = time.perf_counter()
            failed: BaseException | None = None
            try:
                return await behaviour(request, context)
            except BaseException as exc:
                failed = exc
                raise
            finally:
                self._metrics.observe(method, _code(context, failed), time.perf_counter() - started)

        return call

    def _stream(self, method: str, behaviour: Any) -> Any:
        async def call(request: Any, context: Any) -> AsyncIterator[Any]:
            started = time.perf_counter()
            failed: BaseException | None = None
            try:
                async for reply in behaviour(request, context):
                    yield reply
            except BaseException as exc:
                failed = exc
                raise
            finally:
                self._metrics.observe(method, _code(context, failed), time.perf_counter() - started)

        return call
