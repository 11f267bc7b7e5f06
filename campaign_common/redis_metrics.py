"""Redis command errors by operation: a Redis client class that counts what fails.

``campaigns_redis_errors_total{operation}`` counts commands that failed because of the server
or the network after the client's own retries (connection refused or lost, timeout, a replica
that became read-only), by command name (``evalsha`` for the Lua scripts, ``xreadgroup``,
``xadd`` ...). Replies the code expects and handles (BUSYGROUP, NOSCRIPT, a missing stream)
are not counted. Every process exports its
own: the Prometheus ``job`` label says which service it was. Commands sent in a pipeline are
counted as one ``pipeline`` operation by the callers that use one.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import (
    ClusterDownError,
    ReadOnlyError,
    RedisClusterException,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

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


class CountingRedis(Redis):
    """`redis.asyncio.Redis` that counts failed commands in ``campaigns_redis_errors_total``."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        try:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        except FAILURES:
            REDIS_ERRORS.labels(operation=operation_name(args)).inc()
            raise


class CountingRedisCluster(RedisCluster):
    """`redis.asyncio.RedisCluster` that counts failed commands like `CountingRedis`."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        try:
            return await super().execute_command(*args, **options)
        except FAILURES:
            REDIS_ERRORS.labels(operation=operation_name(args)).inc()
            raise
