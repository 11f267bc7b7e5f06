"""Connections to the state Redis and the lock masters: timeouts, retries, version check."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from campaign_common.observability.redis_metrics import CountingRedis
from campaign_common.server_version import check_server_version
from campaign_common.tls import TlsFiles


def make_client(
    url: str,
    timeout_s: float,
    *,
    retries: int = 3,
    max_connections: int | None = None,
    tls: TlsFiles | None = None,
) -> Redis:
    """A bytes-mode client whose every command has a deadline and bounded retries; failed
    commands are counted (`campaign_common.observability.redis_metrics`). ``max_connections``
    caps its pool (None: redis-py's default); ``tls`` gives the files of a ``rediss://`` URL."""
    pool_size: dict[str, Any] = (
        {} if max_connections is None else {"max_connections": max_connections}
    )
    if tls is not None and url.startswith("rediss://"):
        pool_size.update(tls.redis_kwargs())
    client: Redis = CountingRedis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=30,
        **pool_size,
    )
    return client


async def connect_checked(url: str, timeout_s: float, *, tls: TlsFiles | None = None) -> Redis:
    """Connect, refuse servers older than the minimum, return the client."""
    client = make_client(url, timeout_s, tls=tls)
    try:
        check_server_version(await client.info("server"))
    except BaseException:
        await client.aclose()
        raise
    return client
