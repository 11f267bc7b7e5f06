"""Wiring of the gateway process: the app under uvicorn on a socket bound up front, signals.

``GatewayServer`` binds its listening socket before uvicorn starts (so ``port=0`` works and
``server.port`` is known at once), then serves until ``stop()``. ``serve(settings)`` runs it
until SIGTERM or SIGINT. Shutdown: stop accepting connections -> let in-flight requests finish
within ``shutdown_grace_s`` (then cancel them) -> close the scheduler channel. Every step is
bounded; signals are handled here, not by uvicorn, so the process exits with status 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import socket
from collections.abc import Iterator

import uvicorn

from campaign_common.grpc_tls import TlsError
from gateway.app import create_app
from gateway.config import GatewaySettings

log = logging.getLogger(__name__)
STARTUP_TIMEOUT_S = 30.0
STOP_MARGIN_S = 5.0  # beyond the grace period: lifespan shutdown, closing the channel


class StartupError(RuntimeError):
    """The gateway could not start; the message says why and what to change."""


class _Uvicorn(uvicorn.Server):
    """uvicorn that reports readiness, leaves signals to us and never calls sys.exit."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        except SystemExit:  # uvicorn's way of reporting a failed lifespan start-up
            self.should_exit = True
            return
        self.ready.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0 = a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        raise StartupError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
            "set GATEWAY_HOST/GATEWAY_PORT to a free address"
        ) from exc


def _check_tls_files(settings: GatewaySettings) -> None:
    """Unreadable TLS files stop the start here, with the setting named (not in the lifespan)."""
    tls = settings.scheduler_client_tls()
    if tls is None:
        return
    try:
        tls.credentials()
    except TlsError as exc:
        raise StartupError(str(exc)) from exc


class GatewayServer:
    """The gateway app served by uvicorn in this event loop (``start``/``stop``)."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.port = 0
        self._server: _Uvicorn | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        s = self.settings
        _check_tls_files(s)
        app = create_app(s)
        sock = bind_socket(s.host, s.port)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=s.access_log,
            timeout_graceful_shutdown=max(1, math.ceil(s.shutdown_grace_s)),
            server_header=False,
        )
        self._server = server = _Uvicorn(config)
        self._task = asyncio.create_task(server.serve(sockets=[sock]), name="gateway-http")
        ready = asyncio.create_task(server.ready.wait())
        await asyncio.wait(
            {self._task, ready}, timeout=STARTUP_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
        if not ready.done():
            ready.cancel()
            await self.stop()
            sock.close()
            raise StartupError("the app did not start (see the log above)")
        log.info("gateway ready", extra={"port": self.port, "scheduler": s.scheduler_target})

    async def wait_closed(self) -> None:
        """Return when the HTTP server has stopped (after ``stop`` or on its own)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def stop(self) -> None:
        """Stop accepting, finish in-flight requests within the grace period, close the channel."""
        server, task = self._server, self._task
        if server is None or task is None:
            return
        server.should_exit = True
        try:
            await asyncio.wait_for(
                asyncio.shield(task), self.settings.shutdown_grace_s + STOP_MARGIN_S
            )
        except TimeoutError:
            log.error("gateway did not stop in time; cancelling it")
            server.force_exit = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        log.info("gateway stopped")


async def serve(settings: GatewaySettings) -> None:
    """Run until SIGTERM or SIGINT (or until the HTTP server dies), then shut down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = GatewayServer(settings)
    await server.start()
    stopping = asyncio.create_task(stop.wait())
    closed = asyncio.create_task(server.wait_closed())
    try:
        await asyncio.wait({stopping, closed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        closed.cancel()
        await server.stop()
