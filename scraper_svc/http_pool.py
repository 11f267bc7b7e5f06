"""The scraper's HTTP/1.1 connection pool: idle keep-alive connections per origin, O(1) per
request.

httpcore's own pool re-examines every pooled connection on every request and every response
close (expiry, a readability probe of the socket, and a count of all connections for each idle
one), which with tens of keep-alive connections to one host cost a quarter of the scraper's
CPU. This pool keeps the idle connections of each origin in a stack (the most recently used
first: its socket is the likeliest to be alive) and looks only at the one it takes:

    request ─> wait for a slot (at most ``max_connections`` requests in flight)
            ─> pop idle connections of the origin until one is usable (closed, expired or
               server-closed ones are closed and dropped) ─ none ─> a new connection
            ─> send; the response body streams; closing it frees the slot and puts the
               connection back on its origin's stack if it is idle again (keep-alive),
               else closes it
    idle connections beyond ``max_keepalive_connections`` (all origins) are closed, oldest
    first, whenever a connection goes back

Every connection is an `httpcore.AsyncHTTPConnection` on the given network backend, so the
SSRF guard (`scraper_svc.target_guard`) still runs inside every new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import OrderedDict
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import httpcore

Connection = httpcore.AsyncHTTPConnection
OriginKey = tuple[bytes, bytes, int]  # scheme, host, port (httpcore.Origin is not hashable)


def _key(origin: httpcore.Origin) -> OriginKey:
    return (origin.scheme, origin.host, origin.port)


class HostPool:
    """The fetcher's pool, with the interface of httpcore's ``AsyncConnectionPool`` (HTTP/1.1)."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext,
        network_backend: httpcore.AsyncNetworkBackend,
        max_connections: int,
        max_keepalive_connections: int,
        keepalive_expiry_s: float,
    ) -> None:
        self._ssl_context = ssl_context
        self._backend = network_backend
        self._keepalive_expiry_s = keepalive_expiry_s
        self._max_idle = max_keepalive_connections
        self._slots = asyncio.Semaphore(max_connections)
        # Idle connections, oldest first; the value is the origin (its stack's key).
        self._idle: OrderedDict[Connection, OriginKey] = OrderedDict()
        self._stacks: dict[OriginKey, list[Connection]] = {}
        self._busy: set[Connection] = set()

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        await self._slots.acquire()
        origin = request.url.origin
        connection: Connection | None = None
        try:
            connection = await self._take(origin)
            self._busy.add(connection)
            response = await connection.handle_async_request(request)
        except BaseException:
            self._slots.release()
            if connection is not None:
                self._busy.discard(connection)
                await _close(connection)
            raise
        stream = _Returning(response.stream, self, origin, connection)
        return httpcore.Response(
            status=response.status,
            headers=response.headers,
            content=stream,
            extensions=response.extensions,
        )

    async def _take(self, origin: httpcore.Origin) -> Connection:
        stack = self._stacks.get(_key(origin))
        while stack:
            connection = stack.pop()
            del self._idle[connection]
            if connection.is_available() and not connection.has_expired():
                return connection
            await _close(connection)
        return Connection(
            origin,
            ssl_context=self._ssl_context,
            keepalive_expiry=self._keepalive_expiry_s,
            network_backend=self._backend,
        )

    async def _give_back(self, origin: httpcore.Origin, connection: Connection) -> None:
        self._busy.discard(connection)
        self._slots.release()
        if not connection.is_idle():
            await _close(connection)
            return
        key = _key(origin)
        self._stacks.setdefault(key, []).append(connection)
        self._idle[connection] = key
        while len(self._idle) > self._max_idle:
            oldest, oldest_key = self._idle.popitem(last=False)
            self._stacks[oldest_key].remove(oldest)
            await _close(oldest)

    async def aclose(self) -> None:
        connections = [*self._idle, *self._busy]
        self._idle.clear()
        self._stacks.clear()
        self._busy.clear()
        for connection in connections:
            await _close(connection)

    async def __aenter__(self) -> HostPool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()


class _Returning:
    """A response body that hands its connection back to the pool when it is closed."""

    def __init__(
        self, stream: Any, pool: HostPool, origin: httpcore.Origin, connection: Connection
    ) -> None:
        self._stream = stream
        self._pool = pool
        self._origin = origin
        self._connection = connection
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._stream:
            yield part

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if hasattr(self._stream, "aclose"):
                await self._stream.aclose()
        finally:
            await self._pool._give_back(self._origin, self._connection)


async def _close(connection: Connection) -> None:
    with contextlib.suppress(Exception):
        await connection.aclose()
