"""Run keys expire one run retention after their last write: results lists and campaign
fences (refreshed by every accepted write, not by a refused one), and what a fence's expiry
leaves safe (campaign_common.runs.writer)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from campaign_common.runs.keys import SCRAPER_GROUP
from campaign_common.runs.log import RunLog
from campaign_common.runs.record import RunState
from campaign_common.runs.writer import EntryLost, Fenced, Writer
from campaigns.v1 import events_pb2, run_pb2
from tests.support import PARTITIONS, scheduled_request

C1 = PARTITIONS.of("c1")
RETENTION_MS = 60_000


def _result(run_id: str) -> run_pb2.ScrapeResult:
    return run_pb2.ScrapeResult(run_id=run_id, url="http://example.test/")


async def _start(log: RunLog, run_id: str, writer: Writer) -> None:
    started = events_pb2.RunStarted(run_id=run_id, attempt=1)
    await log.append_event(started, state=RunState.RUNNING, writer=writer)


async def test_expiry_results_and_fence_refreshed_by_accepted_writes(state_redis: Redis) -> None:
    log = RunLog(state_redis, PARTITIONS, run_ttl_ms=RETENTION_MS)
    await log.request_run(scheduled_request("s1:1", campaign_id="c1"), dedupe=True)
    await _start(log, "s1:1", Writer("c1", fence=5))
    done = events_pb2.RunSucceeded(run_id="s1:1", attempt=1)
    await log.append_event(
        done, state=RunState.SUCCEEDED, writer=Writer("c1", fence=5), results=[_result("s1:1")]
    )
    for key in (C1.results_key("c1"), C1.fence_key("c1"), C1.written_key("s1:1", 1)):
        assert 0 < await state_redis.pttl(key) <= RETENTION_MS, key

    await state_redis.pexpire(C1.fence_key("c1"), 1_000)
    await state_redis.pexpire(C1.results_key("c1"), 1_000)
    await log.request_run(scheduled_request("s1:2", campaign_id="c1"), dedupe=True)
    with pytest.raises(Fenced):  # a refused write refreshes nothing
        await _start(log, "s1:2", Writer("c1", fence=4))
    assert await state_redis.pttl(C1.fence_key("c1")) <= 1_000
    await log.add_results("c1", [_result("s1:2")], writer=Writer("c1", fence=5), attempt=1)
    assert await state_redis.pttl(C1.fence_key("c1")) > 1_000  # same fence, accepted: refreshed
    assert await state_redis.pttl(C1.results_key("c1")) > 1_000
    assert await state_redis.get(C1.fence_key("c1")) == b"5"


async def test_expiry_expired_fence_never_lets_a_taken_over_writer_in(state_redis: Redis) -> None:
    """After the fence expired (a campaign idle for the whole retention) a new holder starts
    from a low fence and is accepted; a stale holder with a higher fence whose entry was
    taken over is refused all the same, by the entry check."""
    log = RunLog(state_redis, PARTITIONS, run_ttl_ms=RETENTION_MS)
    await state_redis.xgroup_create(C1.runs_stream, SCRAPER_GROUP, id="0", mkstream=True)
    await log.request_run(scheduled_request("s1:1", campaign_id="c1"), dedupe=True)
    reply = await state_redis.xreadgroup(SCRAPER_GROUP, "old", {C1.runs_stream: ">"}, count=1)
    entry = reply[0][1][0][0].decode()
    stale = Writer("c1", fence=9, consumer="old", entry_id=entry)
    await _start(log, "s1:1", stale)
    await state_redis.delete(C1.fence_key("c1"))  # expired: the campaign was idle
    await state_redis.xautoclaim(C1.runs_stream, SCRAPER_GROUP, "new", 0, "0-0")
    fresh = Writer("c1", fence=1, consumer="new", entry_id=entry)
    await log.add_results("c1", [_result("s1:1")], writer=fresh, attempt=1)
    with pytest.raises(EntryLost):
        done = events_pb2.RunSucceeded(run_id="s1:1", attempt=1)
        await log.append_event(done, state=RunState.SUCCEEDED, writer=stale)
    assert await state_redis.get(C1.fence_key("c1")) == b"1"
