"""The batcher of emissions: a burst of fires leaves in a few script calls, each run answered
as if alone; with a linger (group commit), a call waits for more items while others come."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from campaign_common.runs.emission import Emission, EmissionGuard, EmissionGuards
from campaign_common.runs.log import RunLog
from scheduler_svc.batcher import Batcher, Linger
from scheduler_svc.codec import schedule_event
from scheduler_svc.model import ScheduleState
from scheduler_svc.store import SCHEDULE_LOG, Appended, Change, ScheduleStore
from tests.scheduler_svc.records import schedule_record
from tests.support import PARTITIONS, part, runs_stream, scheduled_request, xlen_all


async def _script_calls(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return sum(
        int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval")
    )


async def test_batcher_a_burst_is_a_few_calls_and_each_run_gets_its_own_answer(
    state_redis: Redis,
) -> None:
    runs = RunLog(state_redis, PARTITIONS)
    await EmissionGuards(state_redis, PARTITIONS).raise_all(
        [EmissionGuard("s1", "c1", 1, active=True)]
    )
    assert await runs.request_run(scheduled_request("s1:0"), dedupe=True, schedule_version=1)
    emitter = Batcher(runs.emit_all, max_batch=100, max_calls=2)
    calls = [
        runs.request_call(scheduled_request(f"s1:{n}"), dedupe=True, schedule_version=1)
        for n in range(300)  # s1:0 was emitted before: a duplicate
    ]
    calls.append(runs.request_call(scheduled_request("s1:stale"), dedupe=True, schedule_version=2))
    before = await _script_calls(state_redis)

    answers = await asyncio.gather(*(emitter.submit(call) for call in calls))

    assert answers[0] is Emission.DUPLICATE
    assert answers[1:300] == [Emission.EMITTED] * 299
    assert answers[300] is Emission.STALE
    assert await xlen_all(state_redis, runs_stream) == 300  # s1:0 once, and 299 more
    assert await _script_calls(state_redis) - before <= 5  # 301 runs in ceil(301 / 100) calls


async def test_batcher_a_failed_call_fails_each_run_in_it_and_the_next_call_works(
    state_redis: Redis,
) -> None:
    runs = RunLog(state_redis, PARTITIONS)
    emitter = Batcher(runs.emit_all)
    await state_redis.set(
        part("c1").runs_stream, "not a stream"
    )  # the XADD fails inside the script
    failed = await asyncio.gather(
        *(
            emitter.submit(runs.request_call(scheduled_request(f"m:{n}"), dedupe=False))
            for n in range(3)
        ),
        return_exceptions=True,
    )
    assert all(isinstance(answer, Exception) for answer in failed)
    await state_redis.delete(part("c1").runs_stream)
    again = await emitter.submit(runs.request_call(scheduled_request("m:9"), dedupe=False))
    assert again is Emission.EMITTED


def _created(sid: str) -> Change:
    return Change(sid, 0, schedule_event("created", schedule_record(sid, 1, ScheduleState.ACTIVE)))


class _Recorded:
    """The store's real append, recording the size of each call."""

    def __init__(self, redis: Redis) -> None:
        self.store = ScheduleStore(redis, PARTITIONS)
        self.sizes: list[int] = []

    async def send(self, changes: list[Change]) -> list[Appended]:
        self.sizes.append(len(changes))
        return await self.store.append_many(changes)


def _asked(event: asyncio.Event) -> Callable[[], bool]:
    """A linger's ``others``: someone else may bring items; ``event`` is set once a call
    asks, that is once it starts to linger."""

    def others() -> bool:
        event.set()
        return True

    return others


async def test_batcher_a_lingering_call_gathers_items_until_its_batch_is_full(
    state_redis: Redis,
) -> None:
    calls = _Recorded(state_redis)
    lingering = asyncio.Event()
    # busy_share 0: every slice counts as busy, so only a full batch (or max_s) ends the wait.
    linger = Linger(max_s=60.0, batch=4, others=_asked(lingering), busy_share=0.0)
    batcher = Batcher(calls.send, max_calls=1, linger=linger)
    async with asyncio.timeout(30):
        submitted = [asyncio.create_task(batcher.submit(_created("s0")))]
        await lingering.wait()  # the first call lingers: the others arrive while it waits
        for n in range(1, 4):
            submitted.append(asyncio.create_task(batcher.submit(_created(f"s{n}"))))
        answers = await asyncio.gather(*submitted)
    assert calls.sizes == [4]
    assert len({answer.entry for answer in answers}) == 4 and all(a.entry for a in answers)


async def test_batcher_linger_ends_once_the_loop_is_idle(state_redis: Redis) -> None:
    calls = _Recorded(state_redis)
    batcher = Batcher(calls.send, linger=Linger(max_s=60.0, batch=100, others=lambda: True))
    async with asyncio.timeout(30):  # idle here: the first slice ends the wait, not max_s
        answer = await batcher.submit(_created("alone"))
    assert answer.entry is not None and calls.sizes == [1]


async def test_batcher_does_not_linger_when_no_one_else_is_in_flight(state_redis: Redis) -> None:
    calls = _Recorded(state_redis)
    linger = Linger(max_s=60.0, batch=100, others=lambda: False, busy_share=0.0)
    batcher = Batcher(calls.send, linger=linger)
    async with asyncio.timeout(30):
        answer = await batcher.submit(_created("lone-caller"))
    assert answer.entry is not None and calls.sizes == [1]


async def test_batcher_close_cancels_a_lingering_call_and_sends_nothing(state_redis: Redis) -> None:
    calls = _Recorded(state_redis)
    lingering = asyncio.Event()
    linger = Linger(max_s=60.0, batch=100, others=_asked(lingering), busy_share=0.0)
    batcher = Batcher(calls.send, linger=linger)
    waiting = asyncio.create_task(batcher.submit(_created("never-sent")))
    await asyncio.wait_for(lingering.wait(), timeout=10)  # handed in, its call lingers
    await batcher.close()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert calls.sizes == [] and await state_redis.xlen(SCHEDULE_LOG) == 0
