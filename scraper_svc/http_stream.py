"""The scraper's HTTP connections at the socket: httpcore's network backend on asyncio
protocols.

httpcore's own backends go through anyio: a cancel scope per read and write, an exception map
around each, a lock per send. The scraper bounds every fetch with one deadline of its own
(`scraper_svc.fetcher`), so a stream here is a protocol that buffers what arrives and a
future the reader waits on: no timer unless httpcore passes a timeout, no task, no lock.

- Reads return what has arrived (at most ``max_bytes``); b"" once the peer closed and the
  buffer is empty, as httpcore expects. The socket is paused while more than
  ``_HIGH_WATER_BYTES`` wait unread, so a fast server cannot fill memory behind a slow reader.
- Writes go to the transport at once and wait only while it asks the writer to pause.
- ``is_readable`` (httpcore's test of an idle keep-alive connection) is answered from the
  protocol's state: data or the peer's close arrived while the connection was idle.
- Closing a TLS connection aborts it (no close_notify exchange; see `LoopStream.aclose`).
- Socket errors become httpcore's errors (``ConnectError``, ``ReadError``, ``WriteError``,
  ``ConnectTimeout``), which the fetcher maps to its own.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterable
from typing import Any, cast

import httpcore

_HIGH_WATER_BYTES = 256 * 1024


class _Receiver(asyncio.Protocol):
    """Buffers what the connection receives and wakes the one reader waiting for it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closed = False  # the peer closed, or the connection was lost
        self.error: Exception | None = None
        self.paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _HIGH_WATER_BYTES and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.error = exc
        self._wake()
        self.resume_writing()

    def pause_writing(self) -> None:
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait_for_data(self, timeout_s: float | None) -> None:
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        if timeout_s is None:
            await waiter
            return
        try:
            async with asyncio.timeout(timeout_s):
                await waiter
        except TimeoutError:
            raise httpcore.ReadTimeout(f"no data for {timeout_s:g} s") from None

    async def wait_drained(self) -> None:
        if self._drained is not None:
            await self._drained

    def take(self, max_bytes: int) -> bytes:
        data = bytes(self.buffer[:max_bytes])
        del self.buffer[:max_bytes]
        if self.paused and len(self.buffer) <= _HIGH_WATER_BYTES // 2:
            self.paused = False
            if self.transport is not None and not self.closed:
                self.transport.resume_reading()
        return data


class LoopStream(httpcore.AsyncNetworkStream):
    """One connection (TCP, or TLS over it) as httpcore's network stream."""

    def __init__(self, transport: asyncio.Transport, receiver: _Receiver) -> None:
        self._transport = transport
        self._receiver = receiver

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109 (httpcore interface)
        receiver = self._receiver
        if not receiver.buffer and not receiver.closed:
            await receiver.wait_for_data(timeout)
        if receiver.buffer:
            return receiver.take(max_bytes)
        if receiver.error is not None:
            raise httpcore.ReadError(str(receiver.error) or type(receiver.error).__name__)
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109 (httpcore interface)
        if not buffer:
            return
        if self._receiver.closed or self._transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        self._transport.write(buffer)
        await self._receiver.wait_drained()

    async def aclose(self) -> None:
        if self._transport.get_extra_info("ssl_object") is not None:
            # No close_notify exchange: HTTP framed every response already, and a graceful
            # TLS shutdown would keep the socket open until the peer answers (or 30 s).
            self._transport.abort()
        else:
            self._transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore interface)
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            transport = await loop.start_tls(
                self._transport,
                self._receiver,
                ssl_context,
                server_hostname=server_hostname,
                ssl_handshake_timeout=timeout,
            )
        except TimeoutError as exc:
            self._transport.abort()
            raise httpcore.ConnectTimeout("TLS handshake timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            self._transport.abort()
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        if transport is None:
            raise httpcore.ConnectError("the connection closed during the TLS handshake")
        self._receiver.transport = transport
        return LoopStream(transport, self._receiver)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return bool(self._receiver.buffer) or self._receiver.closed
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        return None


class LoopBackend(httpcore.AsyncNetworkBackend):
    """Opens `LoopStream`s with the running loop (TCP_NODELAY, as asyncio sets it)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address else None
        try:
            async with asyncio.timeout(timeout):
                transport, receiver = await loop.create_connection(
                    _Receiver, host, port, local_addr=local
                )
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"connect timed out after {timeout:g} s") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        for option in socket_options or ():
            sock = transport.get_extra_info("socket")
            if isinstance(sock, socket.socket):
                sock.setsockopt(*option)
        return LoopStream(transport, receiver)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not scrape targets")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
