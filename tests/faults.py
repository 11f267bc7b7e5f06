"""Network faults for tests: a TCP proxy in front of a Redis server that a test steers.

The proxy runs its own event loop in a daemon thread, so it keeps forwarding while the test's
loop waits (or blocks on a subprocess). Processes under test connect to ``proxy.url`` instead
of the server's URL. Faults:

- `partition` / `heal`: a black hole. Bytes in both directions vanish (connections stay open,
  as with a cut cable), so clients see timeouts, not resets. `heal` closes the connections that
  lived through it (their streams lost bytes) and forwards again.
- `drop_replies(match, times)`: the next ``times`` requests whose bytes contain ``match`` are
  forwarded, the server runs them, and their reply is thrown away and the connection closed:
  the client cannot know the command ran, and re-sends it.
- `hold_first(match)`: the first request containing ``match`` is held back until the next
  request arrives on the same connection, then both go through in order (a slow first reply).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._blackhole = False
        self._drop: list[tuple[bytes, int]] = []  # (match, times left)
        self._hold: bytes | None = None
        self.port = 0
        self.dropped = 0  # replies thrown away so far
        self.held = 0  # requests held back so far

    @classmethod
    def to_url(cls, url: str) -> TcpProxy:
        """A started proxy in front of ``redis://host:port``."""
        host, _, port = url.removeprefix("redis://").split("/")[0].rpartition(":")
        return cls(host, int(port)).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def close(self) -> None:
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def partition(self) -> None:
        self._loop.call_soon_threadsafe(setattr, self, "_blackhole", True)

    def heal(self) -> None:
        self._call(self._heal())

    def drop_replies(self, match: bytes, times: int = 1) -> None:
        self._loop.call_soon_threadsafe(self._drop.append, (match, times))

    def hold_first(self, match: bytes) -> None:
        self._loop.call_soon_threadsafe(setattr, self, "_hold", match)

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        self._close_all()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def _heal(self) -> None:
        self._blackhole = False
        self._close_all()

    def _close_all(self) -> None:
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        pair = _Pair(writer, up_writer)
        await asyncio.gather(
            self._requests(reader, up_writer, pair), self._replies(up_reader, writer, pair)
        )
        for each in (writer, up_writer):
            each.close()
            self._writers.discard(each)

    def _take_drop(self, data: bytes) -> bool:
        for index, (match, times) in enumerate(self._drop):
            if match in data:
                if times > 1:
                    self._drop[index] = (match, times - 1)
                else:
                    del self._drop[index]
                return True
        return False

    async def _requests(
        self, reader: asyncio.StreamReader, upstream: asyncio.StreamWriter, pair: _Pair
    ) -> None:
        held = b""
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if self._blackhole or pair.closing:
                    continue
                if self._hold is not None and self._hold in data and not held:
                    self._hold = None
                    self.held += 1
                    held = data
                    continue
                if self._take_drop(data):
                    pair.drop_next_reply = True
                upstream.write(held + data)
                held = b""
                await upstream.drain()
        upstream.close()

    async def _replies(
        self, upstream: asyncio.StreamReader, writer: asyncio.StreamWriter, pair: _Pair
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await upstream.read(65536):
                if self._blackhole or pair.closing:
                    continue
                if pair.drop_next_reply:
                    # The server ran the request; its reply vanishes with the connection.
                    pair.closing = True
                    self.dropped += 1
                    writer.close()
                    return
                writer.write(data)
                await writer.drain()
        writer.close()


class _Pair:
    """State shared by the two directions of one proxied connection."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream
        self.drop_next_reply = False
        self.closing = False
