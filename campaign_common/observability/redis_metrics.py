"""Redis command errors by operation: a Redis client class that counts what fails.

``campaigns_redis_errors_total{operation}`` counts commands that failed because of the server
or the network after the client's own retries (connection refused or lost, timeout, a replica
that became read-only), by command name (``evalsha`` for the Lua scripts, ``xreadgroup``,
``xadd`` ...). Replies the code expects and handles (BUSYGROUP, NOSCRIPT, a missing stream)
are not counted. Every process exports its
own: the Prometheus ``job`` label says which service it was. Commands sent in a pipeline are
counted as one ``pipeline`` operation by the callers that use one.

Being the services' client class, it also trims what redis-py's asyncio client costs per
command: every connection of its pool shares one `redis.driver_info.DriverInfo` (what CLIENT
SETINFO sends; redis-py builds one per connection, reading the installed package's metadata
from disk each time: milliseconds per connection, paid again for every connection a burst
adds); commands are packed by hiredis in C, as redis-py's synchronous client does (its asyncio
connections pack every argument in Python); and a standalone client sends its Lua script calls
over one pipelined connection (`campaign_common.observability.script_pipe`).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from prometheus_client import Counter
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.connection import HiredisRespSerializer
from redis.driver_info import DriverInfo
from redis.exceptions import (
    ClusterDownError,
    ReadOnlyError,
    RedisClusterException,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.utils import HIREDIS_AVAILABLE

from campaign_common.observability.script_pipe import ScriptPipe

# Cluster: a slot without a reachable master (ClusterDownError, SlotNotCoveredError, both
# RedisClusterException or ClusterError), a resharding in progress (TryAgainError).
FAILURES = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    ClusterDownError,
    TryAgainError,
    RedisClusterException,
)

REDIS_ERRORS = Counter(
    "campaigns_redis_errors_total",
    "Redis commands that failed after the client's retries, by operation (command name)",
    ["operation"],
)
# The operations the services send most; initialised so their series exist from start-up.
COMMON_OPERATIONS = (
    "evalsha", "xreadgroup", "xadd", "xack", "xautoclaim", "xpending", "xrange", "xrevrange",
    "xinfo", "xlen", "get", "set", "hgetall", "zcard", "info",
)  # fmt: skip
for _operation in COMMON_OPERATIONS:
    REDIS_ERRORS.labels(operation=_operation)


def operation_name(args: tuple[Any, ...]) -> str:
    if not args:
        return "unknown"
    first = args[0]
    name = first.decode() if isinstance(first, bytes) else str(first)
    return name.split(" ", 1)[0].lower()


def closed_underneath(exc: Exception) -> bool:
    """redis-py 8.1 (asyncio) leaks an AttributeError/TypeError about a ``None`` writer when a
    command writes on a connection that was closed underneath it: reset by the server, or
    disconnected by the cluster client's own clean-up after another command's node error
    (redis/redis-py#4287 and #3546, fixed after 8.1.0). It is a connection failure."""
    return isinstance(exc, AttributeError | TypeError) and "'NoneType' object" in str(exc)


async def counted_call(call: Awaitable[Any], args: tuple[Any, ...]) -> Any:
    try:
        return await call
    except FAILURES:
        REDIS_ERRORS.labels(operation=operation_name(args)).inc()
        raise
    except (AttributeError, TypeError) as exc:
        if not closed_underneath(exc):
            raise
        REDIS_ERRORS.labels(operation=operation_name(args)).inc()
        raise RedisConnectionError(f"connection closed under the command ({exc})") from exc


DRIVER_INFO = DriverInfo()


class _HiredisPacking:
    """Mixed into a connection class: `pack_command` by hiredis (bytes, str, int and float
    arguments; anything else is redis-py's ``DataError``, as with its own packer)."""

    _serializer = HiredisRespSerializer()

    def pack_command(self, *args: Any) -> list[bytes]:
        packed: list[bytes] = self._serializer.pack(*args)
        return packed


class _ClosedWritesLost:
    """Mixed into a connection class: a write on a transport that closed under it is a lost
    connection. uvloop raises ``RuntimeError`` there (asyncio's own loop drops the write);
    redis-py treats only ``OSError`` as a lost connection (disconnect, retry, and on a cluster
    reload the slots), so uvloop's error would escape as a bug and end the loop that made the
    call (seen while a cluster master restarted)."""

    async def _send_packed_command(self, command: Any) -> None:
        try:
            await super()._send_packed_command(command)  # type: ignore[misc]
        except RuntimeError as exc:
            raise ConnectionResetError(f"the connection closed under the write: {exc}") from exc


_CLASSES: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def connection_class(klass: type[AbstractConnection]) -> type[AbstractConnection]:
    """``klass`` with closed writes as lost connections, and hiredis packing if available."""
    if issubclass(klass, _ClosedWritesLost):
        return klass
    if klass not in _CLASSES:
        mixins = (_HiredisPacking, _ClosedWritesLost) if HIREDIS_AVAILABLE else (_ClosedWritesLost,)
        _CLASSES[klass] = type(f"Campaigns{klass.__name__}", (*mixins, klass), {})
    return _CLASSES[klass]


class CountingRedis(Redis):
    """`redis.asyncio.Redis` that counts failed commands in ``campaigns_redis_errors_total``
    (and sends EVALSHA through a `ScriptPipe` when built with `from_url` and it qualifies)."""

    _script_pipe: ScriptPipe | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        single_connection_client: bool = False,
        auto_close_connection_pool: bool | None = None,
        **kwargs: Any,
    ) -> Redis:
        kwargs.setdefault("driver_info", DRIVER_INFO)
        client = super().from_url(
            url, single_connection_client, auto_close_connection_pool, **kwargs
        )
        pool = client.connection_pool
        pool.connection_class = connection_class(pool.connection_class)
        if isinstance(client, CountingRedis):
            client._script_pipe = ScriptPipe.for_client(client)
        return client

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        pipe = self._script_pipe
        if pipe is not None and args[0] == "EVALSHA" and not options:
            return await counted_call(pipe.evalsha(args), args)
        call = super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        return await counted_call(call, args)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        if self._script_pipe is not None:
            await self._script_pipe.aclose()
        await super().aclose(close_connection_pool)


class CountingRedisCluster(RedisCluster):
    """`redis.asyncio.RedisCluster` that counts failed commands like `CountingRedis`, its
    nodes' connections built from `connection_class`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # redis-py picks the class itself (plain or TLS): wrap what it picked, for the nodes
        # it knows now and every node it learns later.
        for options in (self.connection_kwargs, self.nodes_manager.connection_kwargs):
            options["connection_class"] = connection_class(options["connection_class"])
        for node in self.nodes_manager.startup_nodes.values():
            node.connection_class = connection_class(node.connection_class)  # type: ignore[assignment]

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        return await counted_call(super().execute_command(*args, **options), args)

    async def _determine_slot(self, command: str, *args: Any) -> int:
        # redis-py asks the server (COMMAND GETKEYS, one more round trip per call) for the
        # keys of commands whose keys move, as XREAD's and XREADGROUP's do.
        name = command.upper()
        if name in ("XREAD", "XREADGROUP"):
            slots = {self.keyslot(key) for key in _stream_keys(name, args)}
            if len(slots) == 1:
                return slots.pop()
        # Anything else, or streams of several slots (redis-py raises its own error).
        return await super()._determine_slot(command, *args)


def _stream_keys(command: str, args: tuple[Any, ...]) -> list[Any]:
    """The keys of XREAD/XREADGROUP arguments (the first half of what follows STREAMS); none
    for a form this does not know (redis-py then asks the server)."""
    at = 3 if command == "XREADGROUP" else 0  # after GROUP <group> <consumer>
    while at < len(args):
        word = _word(args[at])
        if word == "STREAMS":
            after = args[at + 1 :]
            return list(after[: len(after) // 2])
        if word in ("COUNT", "BLOCK", "CLAIM"):
            at += 2
        elif word == "NOACK":
            at += 1
        else:
            return []
    return []


def _word(arg: Any) -> str:
    if isinstance(arg, bytes):
        return arg.decode(errors="replace").upper()
    return arg.upper() if isinstance(arg, str) else ""
