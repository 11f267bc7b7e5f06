"""Where and how a pipelined lock-master connection connects, read from a redis-py client.

`ConnectParams` takes address, db, credentials, client name and TLS settings from the client's
pool (TCP, TLS for ``rediss://`` via `campaign_common.tls`, or a unix socket); credential
providers and other connection classes are refused with a message naming the way out
(``pipelined=False``). `encode_command` writes the RESP of the commands a new connection sends
first (its hand-shake).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection

from campaign_common.redlock.scripts import ALL_SCRIPTS, LuaScript
from campaign_common.tls import context_from_redis_kwargs


def _bulk(part: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(part), part)


def encode_command(*parts: bytes) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join([_bulk(part) for part in parts])


def describe_client(client: Redis) -> str:
    """``host:port`` (or the socket path) of a redis-py client, for errors and logs."""
    kwargs = client.connection_pool.connection_kwargs
    if kwargs.get("path"):
        return str(kwargs["path"])
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


@dataclass(frozen=True)
class ConnectParams:
    """Where and how `PipelinedNode` connects, read from a redis-py client's pool."""

    host: str
    port: int
    path: str | None
    username: str | None
    password: str | None
    db: int
    client_name: str | None
    connect_timeout_s: float
    tls: ssl.SSLContext | None = None

    @classmethod
    def from_client(cls, client: Redis, default_connect_timeout_s: float) -> ConnectParams:
        pool = client.connection_pool
        kwargs: dict[str, Any] = pool.connection_kwargs
        klass = pool.connection_class
        supported = issubclass(klass, Connection | UnixDomainSocketConnection)
        if not supported or kwargs.get("credential_provider"):
            raise ValueError(
                f"{describe_client(client)}: the pipelined transport supports TCP, TLS and unix "
                "sockets with username/password only; pass pipelined=False for this master"
            )
        tls = context_from_redis_kwargs(kwargs) if issubclass(klass, SSLConnection) else None
        return cls(
            host=str(kwargs.get("host", "localhost")),
            port=int(kwargs.get("port", 6379)),
            path=kwargs.get("path"),
            username=kwargs.get("username"),
            password=kwargs.get("password"),
            db=int(kwargs.get("db") or 0),
            client_name=kwargs.get("client_name"),
            connect_timeout_s=float(
                kwargs.get("socket_connect_timeout") or default_connect_timeout_s
            ),
            tls=tls,
        )

    @property
    def address(self) -> str:
        return self.path or f"{self.host}:{self.port}"

    def handshake(self, scripts: tuple[LuaScript, ...] = ALL_SCRIPTS) -> list[bytes]:
        """Commands sent first on every new connection: auth, db, name, the scripts."""
        commands = []
        if self.password is not None:
            auth = (self.username.encode(),) if self.username else ()
            commands.append(encode_command(b"AUTH", *auth, self.password.encode()))
        if self.db:
            commands.append(encode_command(b"SELECT", b"%d" % self.db))
        if self.client_name:
            commands.append(encode_command(b"CLIENT", b"SETNAME", self.client_name.encode()))
        commands.extend(script.load_command() for script in scripts)
        return commands
