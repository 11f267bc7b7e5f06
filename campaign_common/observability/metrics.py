"""Prometheus exposition and a health probe: the HTTP endpoint of services without their own.

Metric names are declared by each service in its own ``metrics`` module (base units, counters
end in ``_total``, no per-run labels). This module serves the process's registry on a
loopback-or-configured address, from a daemon thread, and stops it on shutdown:

    GET /healthz   200 "ok" while the service's health check reports no problem, 503 with one
                   problem per line otherwise (200 when no check was given)
    anything else  the Prometheus exposition (as `prometheus_client` serves it); with keys
                   configured (``*_METRICS_KEYS``) only for ``Authorization: Bearer <key>``
                   (compared in constant time), 401 otherwise. /healthz stays open for probes.

It is a small WSGI app of its own in front of `prometheus_client.make_wsgi_app`, served by a
threading WSGI server. `stop` blocks (server shutdown, thread join): async callers run it in a
thread (``await asyncio.to_thread(endpoint.stop)``).
"""

from __future__ import annotations

import platform
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import Gauge, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from campaign_common.api_keys import bearer_token, token_matches

# What is wrong with the service now, one line each; empty when it is healthy.
HealthCheck = Callable[[], Iterable[str]]
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# How often the serving thread looks for a shutdown request (bounds `stop`).
POLL_INTERVAL_S = 0.1


BUILD_INFO = Gauge(
    "campaigns_build_info",
    "Always 1; the labels say which build of which service runs",
    ["service", "version", "python"],
)


def declare_build_info(service: str) -> Gauge:
    """``campaigns_build_info{service,version,python}`` = 1: what runs where, joinable."""
    try:
        version = metadata.version("campaign-platform")
    except metadata.PackageNotFoundError:
        version = "unknown"
    BUILD_INFO.labels(service=service, version=version, python=platform.python_version()).set(1)
    return BUILD_INFO


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return  # a scrape every few seconds is not worth a log line


UNAUTHORIZED_BODY = b"401: send 'Authorization: Bearer <key>' with one of the metrics keys\n"


def _text(start_response: Callable[..., Any], status: str, body: bytes, *extra: Any) -> list[bytes]:
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    start_response(status, [*headers, *extra])
    return [body]


def _keyed(metrics: WsgiApp, keys: Sequence[bytes]) -> WsgiApp:
    """``metrics`` only for a request with one of ``keys`` as its Bearer token."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if token_matches(bearer_token(environ.get("HTTP_AUTHORIZATION", "")), keys):
            return metrics(environ, start_response)
        challenge = ("WWW-Authenticate", 'Bearer realm="metrics"')
        return _text(start_response, "401 Unauthorized", UNAUTHORIZED_BODY, challenge)

    return app


def _health_app(check: HealthCheck | None, metrics: WsgiApp) -> WsgiApp:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/healthz":
            return metrics(environ, start_response)
        problems = list(check()) if check is not None else []
        body = ("\n".join(problems) if problems else "ok").encode() + b"\n"
        return _text(start_response, "503 Service Unavailable" if problems else "200 OK", body)

    return app


def _server_class(host: str, port: int) -> type[WSGIServer]:
    """The threading WSGI server for the address family of ``host`` (IPv4 or IPv6)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]

    class Server(ThreadingWSGIServer):
        address_family = family

    return Server


class MetricsEndpoint:
    def __init__(
        self,
        host: str,
        port: int,
        health: HealthCheck | None = None,
        keys: Sequence[bytes] = (),
    ) -> None:
        self._host = host
        self._port = port
        self._health = health
        self._keys = list(keys)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_port if self._server is not None else self._port

    def start(self) -> None:
        metrics: WsgiApp = make_wsgi_app()
        if self._keys:
            metrics = _keyed(metrics, self._keys)
        app = _health_app(self._health, metrics)
        self._server = make_server(
            self._host,
            self._port,
            app,
            server_class=_server_class(self._host, self._port),
            handler_class=_QuietHandler,
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": POLL_INTERVAL_S},
            name="metrics-http",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Blocking (up to a poll interval, then a join): call it off the event loop."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
