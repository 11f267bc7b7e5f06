"""Script calls of the services' client go over one pipelined connection and behave as
redis-py's own: replies to their callers, error replies as redis-py's exceptions, lost
replies re-sent, a stalled connection a timeout, against a real server (and a fault proxy)."""

from __future__ import annotations

import asyncio

import pytest
import redis
from prometheus_client import REGISTRY
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from campaign_common.observability.script_pipe import ScriptPipe
from campaign_common.redis_conn import make_client
from tests.faults import TcpProxy

ECHO = "redis.call('SET', KEYS[1], ARGV[1]); return {KEYS[1], ARGV[1], tonumber(ARGV[2])}"
COUNT = "return redis.call('INCR', KEYS[1])"


def _evalsha_errors() -> float:
    value = REGISTRY.get_sample_value("campaigns_redis_errors_total", {"operation": "evalsha"})
    return value or 0.0


def _server_clients(url: str) -> int:
    plain = redis.Redis.from_url(url)
    try:
        return len(plain.client_list())
    finally:
        plain.close()


async def test_script_pipe_answers_each_caller_with_its_own_reply(state_url: str) -> None:
    client = make_client(state_url, 5.0)
    try:
        assert isinstance(client._script_pipe, ScriptPipe)  # type: ignore[attr-defined]
        echo = client.register_script(ECHO)
        assert await echo(keys=["first"], args=["loads the script", 0]) == [
            b"first",
            b"loads the script",
            0,
        ]
        replies = await asyncio.gather(
            *(echo(keys=[f"k{n}"], args=[f"v{n}", n]) for n in range(200))
        )
        assert replies == [[f"k{n}".encode(), f"v{n}".encode(), n] for n in range(200)]
        assert await client.get("k7") == b"v7"
        # 200 calls at once went over one connection, beside the pool's for the GET.
        assert _server_clients(state_url) <= 3
    finally:
        await client.aclose()


async def test_script_pipe_errors_are_redis_py_errors_and_noscript_reloads(
    state_url: str,
) -> None:
    client = make_client(state_url, 5.0)
    try:
        failing = client.register_script("return redis.error_reply('REFUSED fenced off')")
        with pytest.raises(ResponseError, match="REFUSED fenced off"):
            await failing()
        counter = client.register_script(COUNT)
        assert await counter(keys=["c"]) == 1
        await client.script_flush()  # as after a restart: the server forgot the script
        assert await counter(keys=["c"]) == 2  # NoScriptError -> SCRIPT LOAD -> again
    finally:
        await client.aclose()


async def test_script_pipe_resends_a_script_whose_reply_was_lost(
    proxy: TcpProxy, state_url: str
) -> None:
    client = make_client(proxy.url, 5.0)
    try:
        counter = client.register_script(COUNT)
        assert await counter(keys=["resent"]) == 1
        proxy.drop_replies(b"resent")
        # The server ran it, the reply vanished with the connection: sent again, it ran twice
        # (what the services' scripts guard against with operation ids).
        assert await counter(keys=["resent"]) == 3
        assert proxy.dropped == 1
    finally:
        await client.aclose()


async def test_script_pipe_stall_is_a_counted_timeout_after_the_retries(
    proxy: TcpProxy,
) -> None:
    client = make_client(proxy.url, 0.3, retries=1)
    try:
        counter = client.register_script(COUNT)
        assert await counter(keys=["stalled"]) == 1
        before = _evalsha_errors()
        proxy.partition()
        with pytest.raises(RedisTimeoutError, match="no reply for"):
            await counter(keys=["stalled"])
        assert _evalsha_errors() == before + 1
        proxy.heal()
        assert await counter(keys=["stalled"]) >= 2  # a new connection after the outage
    finally:
        await client.aclose()


async def test_script_pipe_reconnects_after_the_client_was_closed(state_url: str) -> None:
    client = make_client(state_url, 5.0)
    counter = client.register_script(COUNT)
    assert await counter(keys=["again"]) == 1
    await client.aclose()
    try:
        assert await counter(keys=["again"]) == 2  # as redis-py's pool reconnects
    finally:
        await client.aclose()


def test_script_pipe_only_for_plain_standalone_clients(state_url: str) -> None:
    assert ScriptPipe.for_client(make_client(state_url, 5.0)) is not None
    text = redis.asyncio.Redis.from_url(state_url, socket_timeout=5, decode_responses=True)
    no_timeout = redis.asyncio.Redis.from_url(state_url)
    resp3 = redis.asyncio.Redis.from_url(state_url, socket_timeout=5, protocol=3)
    assert [ScriptPipe.for_client(c) for c in (text, no_timeout, resp3)] == [None] * 3
