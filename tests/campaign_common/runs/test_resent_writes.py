"""Run writes re-sent after a lost reply (a real proxy drops it) take effect once.

The proxy forwards a script call, the server runs it, and the reply vanishes with the
connection; redis-py re-sends the call on a new connection. Each test first makes the same
call for another run, so the script is in the server's cache and the dropped call is the one
that ran.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from campaign_common.redis_conn import make_client
from campaign_common.runs.deadletters import DeadLetters
from campaign_common.runs.log import RunLog
from campaign_common.runs.record import RunState
from campaign_common.runs.retryqueue import RetryQueue
from campaign_common.runs.writer import Writer
from campaign_common.timeutil import now_ms
from campaigns.v1 import events_pb2
from tests.faults import TcpProxy
from tests.support import PARTITIONS, delayed_all, event_run_id, run_event_bodies, scheduled_request

C1 = PARTITIONS.of("c1")
RUNS_STREAM = C1.runs_stream
RUN_EVENTS_STREAM = C1.events_stream
DELAYED = C1.delayed


@pytest.fixture
async def proxied(proxy: TcpProxy) -> AsyncIterator[Redis]:
    client = make_client(proxy.url, timeout_s=2.0)
    try:
        yield client
    finally:
        await client.aclose()


async def _events_of(redis: Redis, run_id: str) -> list[str]:
    return [type(b).__name__ for b in await run_event_bodies(redis) if event_run_id(b) == run_id]


async def test_resent_run_events_are_appended_once(
    proxy: TcpProxy, proxied: Redis, state_redis: Redis
) -> None:
    runs = RunLog(proxied, PARTITIONS)
    for run_id in ("warm", "r"):
        await runs.request_run(scheduled_request(run_id), dedupe=False)
    await runs.append_event(
        events_pb2.RunStarted(run_id="warm", attempt=1), state=RunState.RUNNING, writer=Writer("c1")
    )

    proxy.drop_replies(b"EVALSHA")
    await runs.append_event(
        events_pb2.RunStarted(run_id="r", attempt=1), state=RunState.RUNNING, writer=Writer("c1")
    )
    proxy.drop_replies(b"EVALSHA")
    done = events_pb2.RunSucceeded(run_id="r", attempt=1)
    await runs.append_event(
        done, state=RunState.SUCCEEDED, writer=Writer("c1")
    )  # answered, not refused

    assert proxy.dropped == 2
    assert await _events_of(state_redis, "r") == ["RunStarted", "RunSucceeded"]
    run = await RunLog(state_redis, PARTITIONS).get_run("r")
    assert run is not None and run.state is RunState.SUCCEEDED


async def test_resent_retry_is_queued_once(
    proxy: TcpProxy, proxied: Redis, state_redis: Redis
) -> None:
    runs, queue = RunLog(proxied, PARTITIONS), RetryQueue(proxied, PARTITIONS)
    for run_id in ("warm", "r"):
        await runs.request_run(scheduled_request(run_id), dedupe=False)
    await queue.schedule(
        scheduled_request("warm"), "HTTP 503", now_ms() + 60_000, writer=Writer("c1")
    )

    proxy.drop_replies(b"EVALSHA")
    await queue.schedule(scheduled_request("r"), "HTTP 503", now_ms() + 60_000, writer=Writer("c1"))

    assert proxy.dropped == 1
    assert await _events_of(state_redis, "r") == ["RunRetryScheduled"]
    assert await delayed_all(state_redis) == 2


async def test_resent_dead_letter_add_retry_and_purge_act_once(
    proxy: TcpProxy, proxied: Redis, state_redis: Redis
) -> None:
    runs, dead = RunLog(proxied, PARTITIONS), DeadLetters(proxied, PARTITIONS)
    for run_id in ("warm", "r", "p"):
        await runs.request_run(scheduled_request(run_id), dedupe=False)
    warm = await dead.add(scheduled_request("warm"), "HTTP 503", deliveries=1, writer=Writer("c1"))
    await dead.retry(warm)
    purged = await dead.add(scheduled_request("p"), "HTTP 503", deliveries=1, writer=Writer("c1"))

    proxy.drop_replies(b"EVALSHA")
    dead_id = await dead.add(scheduled_request("r"), "HTTP 503", deliveries=1, writer=Writer("c1"))
    assert await _events_of(state_redis, "r") == ["RunDeadLettered"]
    assert await dead.count() == 2

    before = await state_redis.xlen(RUNS_STREAM)
    proxy.drop_replies(b"EVALSHA")
    retried = await dead.retry(dead_id)  # answered with the request, not "not found"
    assert retried.attempt == 2 and await state_redis.xlen(RUNS_STREAM) == before + 1

    proxy.drop_replies(b"EVALSHA")
    await dead.purge(purged)  # answered, not "not found"
    assert proxy.dropped == 3 and await dead.count() == 0
    assert await state_redis.xlen(RUN_EVENTS_STREAM) == 3  # warm, p, r: once each
