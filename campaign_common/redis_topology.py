"""Where a service's state Redis is and how to reach it: standalone, Sentinel or Cluster, plain
or TLS, with an ACL user; the checks of those settings and the client each topology needs.

Settings (on every service's settings, with its prefix, e.g. ``SCHEDULER_STATE_REDIS_MODE``):

- ``STATE_REDIS_MODE``: ``standalone`` (default), ``cluster`` or ``sentinel``.
- ``STATE_REDIS_URL``: standalone: the server; cluster: any node (a seed, the client learns
  the others); sentinel: only its scheme (``rediss`` = TLS to the primary and the Sentinels),
  user, password and db count, its host is not used. ``redis://`` or ``rediss://``
  (``unix://`` in standalone mode), ACL user and password in the URL:
  ``rediss://scheduler:secret@redis.internal:6379/0``.
- ``STATE_REDIS_SENTINELS`` (``host:port``, JSON list or comma-separated) and
  ``STATE_REDIS_SENTINEL_MASTER`` (the name the Sentinels monitor): sentinel mode only.
- ``REDIS_TLS_CA_FILE`` / ``_CERT_FILE`` / ``_KEY_FILE``: see `campaign_common.tls`.

A bad combination is a start-up error naming the setting; URLs in errors and logs have their
password replaced by ``***`` (`redact_url`).

The cluster client (`redis.asyncio.RedisCluster`) is handed to the stores typed as
`redis.asyncio.Redis`: the stores only use commands both clients have, every script's and
pipeline's keys share one hash tag, and the cluster end-to-end test (tests/test_cluster.py)
runs the whole flow on a real cluster.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, cast
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import AuthenticationError, NoPermissionError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from campaign_common.observability.redis_metrics import CountingRedis, CountingRedisCluster
from campaign_common.redis_conn import make_client
from campaign_common.server_version import check_server_version
from campaign_common.tls import TlsFiles

Mode = Literal["standalone", "cluster", "sentinel"]
URL_SCHEMES = ("redis", "rediss")


def redact_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``, for errors and logs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))
    except ValueError:
        return "<unparsable URL>"


def url_problems(url: str, setting: str, *, unix_allowed: bool = True) -> list[str]:
    """What is wrong with a Redis URL, naming ``setting`` and never the password."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        return [f"{setting}: {redact_url(url)} is not a valid URL ({exc})"]
    schemes = (*URL_SCHEMES, "unix") if unix_allowed else URL_SCHEMES
    if parts.scheme not in schemes:
        return [
            f"{setting}: {redact_url(url)} has scheme {parts.scheme or 'none'!r}; use "
            + " or ".join(f"{s}://" for s in schemes)
        ]
    if parts.scheme != "unix" and not parts.hostname:
        return [f"{setting}: {redact_url(url)} names no host"]
    return []


def split_sentinels(value: object) -> object:
    """``host:port`` entries from a JSON list or a comma-separated string."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        return json.loads(text)
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_sentinel(entry: str) -> tuple[str, int]:
    host, sep, port = entry.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{entry!r} is not host:port")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class RedisTopology:
    """The state Redis of one service (see the module docstring)."""

    url: str
    mode: Mode = "standalone"
    sentinels: tuple[tuple[str, int], ...] = ()
    sentinel_master: str = ""
    tls: TlsFiles = field(default_factory=TlsFiles)

    def problems(self, prefix: str) -> list[str]:
        """Every invalid combination, each naming its setting (``prefix`` e.g. SCRAPER_)."""
        url_setting = f"{prefix}STATE_REDIS_URL"
        found = url_problems(self.url, url_setting, unix_allowed=self.mode == "standalone")
        if found:
            return found
        db = urlsplit(self.url).path.strip("/") or "0"
        if self.mode == "cluster" and db != "0":
            found.append(f"{url_setting}: a Redis Cluster has database 0 only, not /{db}")
        if self.mode == "sentinel":
            if not self.sentinels:
                found.append(f"{prefix}STATE_REDIS_SENTINELS: sentinel mode needs host:port list")
            if not self.sentinel_master:
                found.append(
                    f"{prefix}STATE_REDIS_SENTINEL_MASTER: sentinel mode needs the master name"
                )
        elif self.sentinels or self.sentinel_master:
            found.append(
                f"{prefix}STATE_REDIS_SENTINELS/{prefix}STATE_REDIS_SENTINEL_MASTER are set "
                f"but {prefix}STATE_REDIS_MODE is {self.mode}: set it to sentinel or remove them"
            )
        return found

    @property
    def uses_tls(self) -> bool:
        return urlsplit(self.url).scheme == "rediss"

    def describe(self) -> str:
        """For errors and logs: mode and where, without the password."""
        if self.mode == "sentinel":
            where = ",".join(f"{host}:{port}" for host, port in self.sentinels)
            return f"sentinel master {self.sentinel_master!r} via {where}"
        return f"{self.mode} {redact_url(self.url)}"


def make_state_client(
    topology: RedisTopology,
    timeout_s: float,
    *,
    retries: int = 3,
    max_connections: int | None = None,
) -> Redis:
    """A bytes-mode client of the state Redis in ``topology`` (deadlines, bounded retries,
    failed commands counted). ``max_connections`` caps its pool (per node on a cluster)."""
    tls = topology.tls if topology.uses_tls else None
    if topology.mode == "standalone":
        return make_client(
            topology.url, timeout_s, retries=retries, max_connections=max_connections, tls=tls
        )
    common: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries),
        **(tls.redis_kwargs() if tls else {}),
    }
    if max_connections is not None:
        common["max_connections"] = max_connections
    if topology.mode == "cluster":
        cluster = CountingRedisCluster.from_url(topology.url, **common)
        return cast(Redis, cluster)
    return _sentinel_master(topology, common)


def _sentinel_master(topology: RedisTopology, common: dict[str, Any]) -> Redis:
    parts = urlsplit(topology.url)
    tls_kwargs = {key: value for key, value in common.items() if key.startswith("ssl_")}
    ssl = {"ssl": True} if topology.uses_tls else {}
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(topology.sentinels),
        # The Sentinels: same TLS and deadlines as the primary, no credentials (see docs).
        sentinel_kwargs={
            "socket_timeout": common["socket_timeout"],
            "socket_connect_timeout": common["socket_connect_timeout"],
            **ssl,
            **tls_kwargs,
        },
        **ssl,
        **common,
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        username=parts.username,
        password=parts.password,
        db=int(parts.path.strip("/") or 0),
    )
    client = sentinel.master_for(topology.sentinel_master, redis_class=SentinelRedis)
    client.sentinels = sentinel
    return cast(Redis, client)


class SentinelRedis(CountingRedis):
    """The primary named by the Sentinels; closing it closes the Sentinel connections too."""

    sentinels: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinels is not None:
            for client in self.sentinels.sentinels:
                await client.aclose()


async def connect_state(topology: RedisTopology, timeout_s: float, **options: Any) -> Redis:
    """`make_state_client`, then refuse servers older than the minimum (every node of a
    cluster); the client is closed again when that fails."""
    client = make_state_client(topology, timeout_s, **options)
    try:
        if topology.mode == "cluster":
            cluster = cast(RedisCluster, client)
            replies = await cluster.info("server", target_nodes=RedisCluster.ALL_NODES)
            for info in cast(dict[str, dict[str, Any]], replies).values():
                check_server_version(info)
        else:
            check_server_version(await client.info("server"))
    except BaseException:
        await client.aclose()
        raise
    return client


def unreachable_message(what: str, where: str, setting: str, exc: BaseException) -> str:
    """Why a Redis connection failed at start-up and which setting to check; refused
    credentials (wrong password, unknown or disabled ACL user, missing permission) are said
    so. ``where`` must already be redacted."""
    if isinstance(exc, AuthenticationError) or "WRONGPASS" in str(exc):
        return (
            f"{what} {where} refused the credentials ({exc}): check the user and password in "
            f"{setting} and that the ACL user exists and is enabled"
        )
    if isinstance(exc, NoPermissionError) or "NOPERM" in str(exc):
        return (
            f"{what} {where}: the ACL user lacks a permission ({exc}); grant the rules listed "
            "in docs/operations.md (Redis topologies, ACL users)"
        )
    return f"{what} {where} unreachable: {exc} (check {setting})"
