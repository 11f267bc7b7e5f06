"""The schedule store's batched append: each change checked and appended on its own."""

from __future__ import annotations

from redis.asyncio import Redis

from scheduler_svc.codec import schedule_event
from scheduler_svc.model import Schedule, ScheduleState, Scrape, Timing, TimingKind
from scheduler_svc.store import SCHEDULE_LOG, ScheduleStore


def _schedule(sid: str, version: int, state: ScheduleState = ScheduleState.ACTIVE) -> Schedule:
    return Schedule(
        schedule_id=sid,
        campaign_id="c",
        name=sid,
        timing=Timing(TimingKind.RUN_AT, run_at_ms=1),
        scrape=Scrape(urls=("http://example.com/",), selectors=()),
        version=version,
        state=state,
        created_at_ms=1,
        updated_at_ms=version,
    )


async def test_store_append_many_checks_each_change_on_its_own(state_redis: Redis) -> None:
    store = ScheduleStore(state_redis)
    for sid in ("a", "b", "c"):
        await store.append(sid, 0, schedule_event("created", _schedule(sid, 1)))
    done = ScheduleState.COMPLETED
    entries = await store.append_many(
        [
            ("a", 1, schedule_event("updated", _schedule("a", 2, done))),
            ("b", 7, schedule_event("updated", _schedule("b", 8, done))),  # stale: refused
            ("c", 1, schedule_event("updated", _schedule("c", 2, done))),
            ("c", 1, schedule_event("updated", _schedule("c", 2, done))),  # now stale too
        ]
    )
    assert entries[1] is None and entries[3] is None
    assert entries[0] is not None and entries[2] is not None and entries[0] < entries[2]
    assert await state_redis.xlen(SCHEDULE_LOG) == 5
    versions = await state_redis.hgetall("{sched}:versions")
    assert versions == {b"a": b"2", b"b": b"1", b"c": b"2"}
