"""Lua script calls (EVALSHA) of a standalone Redis client over one pipelined connection.

redis-py sends every command through its own path: a pool checkout under a lock, a write per
command, a read under a timer, the connection handed back, its observability hooks; for the
scripts that carry the run path (several per run, from up to 50 runs at once) that costs more
CPU than the scripts themselves. `ScriptPipe` sends them as the Redlock client sends its
scripts to the lock masters (`campaign_common.redlock.pipelined_node.PipelinedNode`): one
connection, everything sent during one event-loop iteration in one ``write``, replies parsed by
hiredis and matched to their callers in order. Every other command stays on redis-py's pool.

What a caller sees is redis-py's: the reply as redis-py returns it for EVALSHA (bytes mode),
an error reply as redis-py's exception (``NoScriptError``, so `AsyncScript` loads the script
and calls again; ``ResponseError`` ...), and a lost or stalled connection as redis-py's
``ConnectionError`` / ``TimeoutError`` after the client's own retry policy (the same `Retry`,
so the same attempts and back-off; scripts are safe to re-send, DESIGN section 3). A
connection with calls outstanding and no reply for the client's ``socket_timeout`` is aborted
and its calls fail, as a read past ``socket_timeout`` does in redis-py; replies come in order,
so one stalled call takes the calls behind it along, and all of them are retried. A call whose
caller was cancelled still runs (it was sent); its reply is dropped.

Only plain standalone clients qualify (`for_client`): a TCP, TLS or unix-socket pool of
redis-py's own connection classes, bytes replies, RESP2, a ``socket_timeout``; Sentinel and
cluster clients keep redis-py's path for everything.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import hiredis
from redis._parsers.base import BaseParser
from redis.asyncio import Redis
from redis.asyncio.connection import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.connection import HiredisRespSerializer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from campaign_common.redlock.channel import NodeUnavailable
from campaign_common.redlock.connect_params import ConnectParams
from campaign_common.redlock.pipelined_node import PipelinedNode

_SERIALIZER = HiredisRespSerializer()
_STALLED = "no reply for"  # how PipelinedNode words a stall


class ScriptPipe:
    """EVALSHA of one client over one pipelined connection (see the module docstring)."""

    def __init__(self, params: ConnectParams, stall_timeout_s: float, retry: Retry) -> None:
        self._params = params
        self._stall_timeout_s = stall_timeout_s
        self._retry = retry
        self._node = self._new_node()

    @classmethod
    def for_client(cls, client: Redis) -> ScriptPipe | None:
        """The pipe for ``client``, or None when it does not qualify (module docstring)."""
        pool = client.connection_pool
        kwargs: dict[str, Any] = pool.connection_kwargs
        timeout_s = kwargs.get("socket_timeout")
        plain = type(pool) is ConnectionPool and not kwargs.get("decode_responses")
        if not plain or kwargs.get("protocol") not in (None, 2, "2") or not timeout_s:
            return None
        try:
            params = ConnectParams.from_client(client, float(timeout_s))
        except ValueError:  # a credential provider or a connection class of its own
            return None
        return cls(params, float(timeout_s), client.get_retry() or Retry(NoBackoff(), 0))

    def _new_node(self) -> PipelinedNode:
        return PipelinedNode(self._params, stall_timeout_s=self._stall_timeout_s, scripts=())

    async def evalsha(self, args: tuple[Any, ...]) -> Any:
        """``EVALSHA sha numkeys *keys_and_args`` (``args`` as redis-py's execute_command
        gets them); retried on a lost or stalled connection per the client's retry policy."""
        wire = b"".join(_SERIALIZER.pack(*args))
        return await self._retry.call_with_retry(partial(self._call, wire), _ignore_failure)

    async def _call(self, wire: bytes) -> Any:
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._node.send(wire, partial(_resolve, future))
        reply = await future
        if isinstance(reply, hiredis.ReplyError):  # as redis-py's own parser raises it
            error: Exception = BaseParser.parse_error(str(reply))  # type: ignore[no-untyped-call]
            raise error
        if isinstance(reply, NodeUnavailable):
            if _STALLED in str(reply):
                raise RedisTimeoutError(f"Timeout reading from {self._params.address}: {reply}")
            raise RedisConnectionError(f"Error with {self._params.address}: {reply}")
        return reply

    async def aclose(self) -> None:
        """Close the connection (bounded by the stall timeout); a later call reconnects, as
        redis-py's pool does after ``aclose``."""
        node, self._node = self._node, self._new_node()
        await node.aclose(self._stall_timeout_s)


def _resolve(future: asyncio.Future[object], reply: object) -> None:
    if not future.done():  # its caller was cancelled: the reply is dropped
        future.set_result(reply)


async def _ignore_failure(error: Exception) -> None:
    return None
