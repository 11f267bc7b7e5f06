"""`PipelinedNode`: one lock master over ONE pipelined connection (see
`campaign_common.redlock.channel` for the interface and why).

`_Pipe` is the connection: requests written in batches (everything sent during one event-loop
iteration leaves in one ``write``), replies parsed by hiredis and matched to their callbacks in
order, a watchdog that aborts a connection with requests outstanding and no reply for
``stall_timeout_s``. `PipelinedNode` connects lazily (queuing requests meanwhile), sends the
hand-shake of `campaign_common.redlock.connect_params.ConnectParams` first, reloads the
scripts after a NOSCRIPT, and after a failed connect fails requests at once for a short,
growing back-off.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import cast

import hiredis

from campaign_common.redlock.channel import NodeUnavailable, ReplySink, deliver
from campaign_common.redlock.connect_params import ConnectParams, encode_command
from campaign_common.redlock.scripts import ALL_SCRIPTS, RELEASE, LuaScript, lock_key

log = logging.getLogger(__name__)

_BACKOFF_MIN_S = 0.05
_BACKOFF_MAX_S = 1.0
_PING = b"*1\r\n$4\r\nPING\r\n"
# Whether this connection may release with DELIFEQ (Valkey 9+: compare-and-delete as a native
# command, less than half the master's CPU of the RELEASE script): the probe runs it on a key of
# the Redlock namespace with a value no token has (tokens are 16 bytes), so it deletes nothing.
# An error (unknown command, an ACL without +delifeq, a cluster redirection) keeps the script.
_DELIFEQ_PROBE = encode_command(b"DELIFEQ", lock_key("delifeq").encode(), b"-")


class _Pipe(asyncio.Protocol):
    """One connection: requests written in batches, replies matched to callbacks in order."""

    def __init__(self, node: PipelinedNode) -> None:
        self._node = node
        self._loop = asyncio.get_running_loop()
        self._reader = hiredis.Reader()
        # callbacks in request order, and the index each takes first (-1: a plain callback)
        self._waiters: deque[Callable[..., None]] = deque()
        self._indexes: deque[int] = deque()
        self._out: list[bytes] = []
        self._flush_pending = False
        self._transport: asyncio.Transport | None = None
        self._last_progress = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport but implement it.
        self._transport = cast(asyncio.Transport, transport)

    def send(self, wire: bytes, callback: Callable[..., None], index: int = -1) -> None:
        if not self._waiters:
            self._last_progress = self._loop.time()
            if self._watchdog is None:
                self._arm_watchdog()
        self._waiters.append(callback)
        self._indexes.append(index)
        self._out.append(wire)
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        out, self._out = self._out, []
        transport = self._transport
        # A closing transport is about to report connection_lost, which fails every waiter;
        # writing to it would raise on uvloop (RuntimeError, in a loop callback).
        if transport is not None and not self.closed and out and not transport.is_closing():
            transport.write(b"".join(out))

    def data_received(self, data: bytes) -> None:
        self._last_progress = self._loop.time()
        reader = self._reader
        reader.feed(data)
        waiters, indexes = self._waiters, self._indexes
        error_type = hiredis.ReplyError
        while (reply := reader.gets()) is not False:
            if not waiters:  # a reply nobody asked for: the stream is out of step
                self.abort(NodeUnavailable(f"{self._node.address}: unexpected reply"))
                return
            callback = waiters.popleft()
            index = indexes.popleft()
            if isinstance(reply, error_type) and str(reply).startswith("NOSCRIPT"):
                self._node.reload_scripts()
            try:  # `deliver`, inline: this loop runs once per reply
                if index < 0:
                    callback(reply)
                else:
                    callback(index, reply)
            except Exception:
                log.exception("redlock reply handler failed")

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f"connection lost ({exc})" if exc else "connection closed"
        self.abort(NodeUnavailable(f"{self._node.address}: {reason}"))

    def _arm_watchdog(self) -> None:
        self._watchdog = self._loop.call_later(self._node.stall_timeout_s / 2, self._check_stall)

    def _check_stall(self) -> None:
        self._watchdog = None
        if not self._waiters or self.closed:
            return
        stalled_s = self._loop.time() - self._last_progress
        if stalled_s >= self._node.stall_timeout_s:
            self.abort(NodeUnavailable(f"{self._node.address}: no reply for {stalled_s:.2f} s"))
        else:
            self._arm_watchdog()

    @property
    def idle(self) -> bool:
        return not self._waiters

    def abort(self, error: Exception) -> None:
        """Close the connection now and fail every outstanding request with ``error``."""
        if not self.closed:
            self.closed = True
            self._node.pipe_closed(self)
            if self._watchdog is not None:
                self._watchdog.cancel()
            if self._transport is not None:
                self._transport.abort()
        waiters, self._waiters = self._waiters, deque()
        indexes, self._indexes = self._indexes, deque()
        for callback, index in zip(waiters, indexes, strict=True):
            deliver(callback, error, index)


class PipelinedNode:
    """One lock master over one pipelined connection (see the module docstring).

    ``scripts`` are loaded on every new connection and again after a NOSCRIPT (the Redlock
    scripts by default; none for a connection whose callers load their own scripts).
    """

    def __init__(
        self,
        params: ConnectParams,
        *,
        stall_timeout_s: float,
        scripts: tuple[LuaScript, ...] = ALL_SCRIPTS,
    ) -> None:
        self.params = params
        self.address = params.address
        self.stall_timeout_s = stall_timeout_s
        self.scripts = scripts
        self._pipe: _Pipe | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._queued: list[tuple[bytes, Callable[..., None], int]] = []
        self._failed_until = 0.0
        self._backoff_s = _BACKOFF_MIN_S
        self._last_error: Exception = NodeUnavailable(f"{self.address}: not connected")
        self._reloading = False
        self._closed = False
        # DELIFEQ answered on the current connection (see _DELIFEQ_PROBE); only a request sent
        # into that live connection uses it, a queued one is sent as the script.
        self.native_release = False

    def call(
        self,
        script: LuaScript,
        parts: tuple[bytes, ...],
        wire: bytes,
        sink: ReplySink,
        index: int,
    ) -> None:
        pipe = self._pipe
        if pipe is not None:  # the common case, one call less
            pipe.send(wire, sink, index)
        else:
            self.send(wire, sink, index)

    def send(self, wire: bytes, callback: Callable[..., None], index: int = -1) -> None:
        """Send ``wire``; ``callback(reply)``, or ``callback(index, reply)`` if ``index >= 0``."""
        pipe = self._pipe
        if pipe is not None:
            pipe.send(wire, callback, index)
            return
        loop = asyncio.get_running_loop()
        if self._closed:
            error = NodeUnavailable(f"{self.address}: client closed")
            loop.call_soon(deliver, callback, error, index)
        elif loop.time() < self._failed_until:
            loop.call_soon(deliver, callback, self._last_error, index)
        else:
            self._queued.append((wire, callback, index))
            if self._connecting is None:
                self._connecting = loop.create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.params.connect_timeout_s):
                pipe = await self._open(loop)
        except (OSError, TimeoutError) as exc:
            self._connect_failed(loop, exc)
            return
        except asyncio.CancelledError:
            self._connect_failed(loop, NodeUnavailable("client closed"))
            raise
        finally:
            self._connecting = None
        if pipe.closed:  # lost between connect and now
            self._connect_failed(loop, NodeUnavailable("connection closed during set-up"))
            return
        self._backoff_s = _BACKOFF_MIN_S
        self._pipe = pipe
        for command in self.params.handshake(self.scripts):
            pipe.send(command, self._check_handshake)
        if RELEASE in self.scripts:
            pipe.send(_DELIFEQ_PROBE, partial(self._probed, pipe))
        queued, self._queued = self._queued, []
        for wire, callback, index in queued:
            pipe.send(wire, callback, index)

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Pipe:
        if self.params.path:
            _, pipe = await loop.create_unix_connection(lambda: _Pipe(self), self.params.path)
        else:
            _, pipe = await loop.create_connection(
                lambda: _Pipe(self), self.params.host, self.params.port, ssl=self.params.tls
            )
        return pipe

    def _connect_failed(self, loop: asyncio.AbstractEventLoop, exc: BaseException) -> None:
        detail = "connect timed out" if isinstance(exc, TimeoutError) else f"connect failed: {exc}"
        if isinstance(exc, NodeUnavailable):
            detail = str(exc)
        self._last_error = NodeUnavailable(f"{self.address}: {detail}")
        self._failed_until = loop.time() + self._backoff_s
        self._backoff_s = min(self._backoff_s * 2, _BACKOFF_MAX_S)
        queued, self._queued = self._queued, []
        for _, callback, index in queued:
            deliver(callback, self._last_error, index)

    def _check_handshake(self, reply: object) -> None:
        if isinstance(reply, Exception) and self._pipe is not None:
            error = NodeUnavailable(f"{self.address}: connection set-up refused: {reply}")
            self._last_error = error
            self._pipe.abort(error)

    def _probed(self, pipe: _Pipe, reply: object) -> None:
        if self._pipe is pipe and type(reply) is int:
            self.native_release = True

    def pipe_closed(self, pipe: _Pipe) -> None:
        if self._pipe is pipe:
            self._pipe = None
            self.native_release = False
            self._reloading = False  # a new connection loads the scripts in its handshake

    def reload_scripts(self) -> None:
        """After a NOSCRIPT (the master restarted or flushed its scripts): load them again."""
        if self._reloading or self._pipe is None or not self.scripts:
            return
        self._reloading = True
        log.info("redlock master %s lost its scripts; loading them again", self.address)
        for index, script in enumerate(self.scripts):
            last = index == len(self.scripts) - 1
            self._pipe.send(script.load_command(), self._reloaded if last else _ignore)

    def _reloaded(self, reply: object) -> None:
        self._reloading = False

    async def ping(self) -> None:
        """One round trip; since replies come in order, also a barrier for earlier requests."""
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self.send(_PING, partial(_resolve, future))
        reply = await future
        if isinstance(reply, Exception):
            raise reply

    async def connect(self) -> None:
        async with asyncio.timeout(self.params.connect_timeout_s + self.stall_timeout_s):
            await self.ping()

    async def aclose(self, timeout_s: float) -> None:
        """Wait (bounded) for the replies still outstanding, then close the connection."""
        if self._pipe is not None and not self._pipe.idle:
            try:
                async with asyncio.timeout(timeout_s):
                    await self.ping()
            except (TimeoutError, NodeUnavailable):
                pass
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        if self._pipe is not None:
            self._pipe.abort(NodeUnavailable(f"{self.address}: client closed"))


def _ignore(reply: object) -> None:
    return None


def _resolve(future: asyncio.Future[object], reply: object) -> None:
    if not future.done():
        future.set_result(reply)
