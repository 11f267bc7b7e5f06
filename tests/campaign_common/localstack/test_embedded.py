"""Embedded server launcher and the minimum-version check."""

from __future__ import annotations

import pytest
import redis

from campaign_common.localstack.embedded import (
    EmbeddedRedis,
    EmbeddedServerError,
    find_server_binary,
)
from campaign_common.server_version import UnsupportedServerError, check_server_version


def test_embedded_server_starts_restarts_on_same_port_and_stops() -> None:
    server = EmbeddedRedis("t").start()
    try:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        port = server.port
        server.restart()
        assert server.port == port
        assert client.ping()
        client.close()
    finally:
        server.stop()
    with pytest.raises(redis.ConnectionError):
        redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1).ping()


def test_embedded_missing_binary_is_a_clear_error() -> None:
    with pytest.raises(EmbeddedServerError, match="does not exist"):
        find_server_binary("/nonexistent/redis-server")


def test_server_version_below_minimum_is_refused() -> None:
    with pytest.raises(UnsupportedServerError, match=r"6\.0\.9 is too old"):
        check_server_version({"redis_version": "6.0.9"})
    assert check_server_version({b"redis_version": b"7.2.4"}) == "7.2.4"
