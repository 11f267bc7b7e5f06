"""The gateway's Prometheus metrics and its `/metrics` route.

Requests are counted by route template (never by raw path, so ids do not become labels),
method (the standard methods; anything else is ``OTHER``) and status; latency is a histogram
in seconds. ``GATEWAY_METRICS_KEYS`` set: ``/metrics`` answers only a Bearer key of them (401
otherwise; constant-time comparison), apart from the API keys.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pydantic import SecretStr

from campaign_common.api_keys import bearer_token, key_bytes, token_matches
from campaign_common.observability.metrics import UNAUTHORIZED_BODY, declare_build_info

REQUESTS = Counter(
    "campaigns_gateway_requests_total", "HTTP requests by route, method and status",
    ["route", "method", "status"],
)  # fmt: skip
LATENCY = Histogram(
    "campaigns_gateway_request_duration_seconds", "HTTP request latency by route", ["route"]
)

BUILD_INFO = declare_build_info("gateway")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _method(request: Request) -> str:
    return request.method if request.method in METHODS else "OTHER"


def _route(request: Request) -> str:
    route = request.scope.get("route")
    return str(getattr(route, "path", "unmatched"))


def install_metrics(app: FastAPI, keys: list[SecretStr]) -> None:
    """Count every request; serve ``/metrics`` (only for a Bearer key of ``keys``, if any)."""
    expected = key_bytes(keys)

    @app.middleware("http")
    async def measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = _route(request)
        REQUESTS.labels(route=route, method=_method(request), status=response.status_code).inc()
        LATENCY.labels(route=route).observe(time.perf_counter() - started)
        return response

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        given = bearer_token(request.headers.get("authorization", ""))
        if expected and not token_matches(given, expected):
            return Response(
                UNAUTHORIZED_BODY,
                status_code=401,
                media_type="text/plain",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
