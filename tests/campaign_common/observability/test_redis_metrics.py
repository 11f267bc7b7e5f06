"""Failed Redis commands are counted by operation; expected error replies are not."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

import pytest
import uvloop
from prometheus_client import REGISTRY
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, ResponseError

from campaign_common.localstack.embedded import free_port
from campaign_common.observability.redis_metrics import DRIVER_INFO, counted_call
from campaign_common.redis_conn import make_client


def _errors(operation: str) -> float:
    value = REGISTRY.get_sample_value("campaigns_redis_errors_total", {"operation": operation})
    return value or 0.0


def test_common_operations_exist_from_start_up() -> None:
    assert REGISTRY.get_sample_value("campaigns_redis_errors_total", {"operation": "xadd"}) == 0


async def test_an_unreachable_server_counts_an_error_of_the_operation() -> None:
    client = make_client(f"redis://127.0.0.1:{free_port()}/0", 1.0, retries=0)
    before = _errors("get")
    try:
        with pytest.raises(RedisConnectionError):
            await client.get("k")
    finally:
        await client.aclose()
    assert _errors("get") == before + 1


async def test_answers_and_expected_error_replies_are_not_counted(state_url: str) -> None:
    client = make_client(state_url, 5.0)
    before = (_errors("set"), _errors("xinfo"))
    try:
        await client.set("k", "v")
        with pytest.raises(ResponseError):
            await client.xinfo_groups("no-such-stream")
    finally:
        await client.aclose()
    assert (_errors("set"), _errors("xinfo")) == before


async def _raising(exc: Exception) -> None:
    raise exc


async def test_a_write_on_a_connection_closed_underneath_is_a_connection_error() -> None:
    # What redis-py 8.1 raises when a command writes on a connection another task closed.
    leaked = AttributeError("'NoneType' object has no attribute 'writelines'")
    before = _errors("evalsha")
    with pytest.raises(RedisConnectionError, match="closed under the command"):
        await counted_call(_raising(leaked), ("EVALSHA", "sha", 1, "k"))
    assert _errors("evalsha") == before + 1
    bug = AttributeError("'Schedule' object has no attribute 'spec'")
    with pytest.raises(AttributeError, match="Schedule"):
        await counted_call(_raising(bug), ("EVALSHA",))
    assert _errors("evalsha") == before + 1


async def test_the_client_packs_with_hiredis_and_round_trips_every_argument_type(
    state_url: str,
) -> None:
    client = make_client(state_url, 5.0)
    try:
        connection = client.connection_pool.make_connection()
        assert type(connection).__name__ == "CampaignsConnection"  # hiredis packing mixed in
        packed = connection.pack_command("HSET", b"h", "text", "é", "int", 7, "float", 0.25)
        assert b"".join(packed).startswith(b"*8\r\n$4\r\nHSET\r\n$1\r\nh\r\n")
        await client.hset("h", mapping={"text": "é", "int": 7, "float": 0.25, "raw": b"\x00\xff"})
        stored = await client.hgetall("h")
        assert stored == {
            b"text": "é".encode(),
            b"int": b"7",
            b"float": b"0.25",
            b"raw": b"\x00\xff",
        }
        # A script call with keys and arguments, as the services' stores send them.
        reply = await client.eval("return {KEYS[1], ARGV[1], ARGV[2]}", 1, "k", "a", 42)
        assert reply == [b"k", b"a", b"42"]
        with pytest.raises(DataError):  # what redis-py's own packer raises too
            await client.set("k", True)  # type: ignore[arg-type]
        await connection.disconnect()
    finally:
        await client.aclose()


async def test_connections_share_one_driver_info(state_url: str) -> None:
    client = make_client(state_url, 5.0)
    try:
        first, second = (client.connection_pool.make_connection() for _ in range(2))
        assert first.driver_info is second.driver_info is DRIVER_INFO
        info = await client.client_info()  # the SETINFO hand-shake still names the library
        assert (info["lib-name"], info["lib-ver"]) == ("redis-py", DRIVER_INFO.lib_version)
    finally:
        await client.aclose()


def read_after_a_transport_closed_under_it(make: Callable[[], Redis]) -> bytes | None:
    """On a uvloop loop, with a client from ``make``: set a key, abort the transport of each
    pooled connection under it (the connections still count as connected), then read the
    key back through the same pool."""

    async def scenario() -> bytes | None:
        client = make()
        try:
            await client.set("closed-under", b"v")
            if isinstance(client, RedisCluster):  # the free connections of the key's node
                connections = client.get_node_from_key("closed-under")._free
            else:
                connections = client.connection_pool._available_connections
            for connection in connections:
                connection._writer.transport.abort()
            return cast("bytes | None", await client.get("closed-under"))
        finally:
            await client.aclose()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(scenario())


def test_a_write_on_a_transport_closed_under_it_is_retried_on_uvloop(state_url: str) -> None:
    # uvloop raises RuntimeError where asyncio drops the write: it must reach redis-py as a
    # lost connection (reconnect and retry), never as an error that ends the caller's loop.
    assert read_after_a_transport_closed_under_it(lambda: make_client(state_url, 5.0)) == b"v"
