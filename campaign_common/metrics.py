"""Prometheus exposition: a `/metrics` HTTP endpoint for services without an HTTP server.

Metric names are declared by each service in its own ``metrics`` module (base units, counters
end in ``_total``, no per-run labels). This module only serves the process's registry on a
loopback-or-configured address, from a daemon thread, and stops it on shutdown.
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server


class MetricsEndpoint:
    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_port if self._server is not None else self._port

    def start(self) -> None:
        self._server, self._thread = start_http_server(self._port, addr=self._host)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
