"""The schedule store's batched append: each change checked and appended on its own."""

from __future__ import annotations

from google.protobuf.message import Message
from redis.asyncio import Redis

from scheduler_svc.codec import schedule_event
from scheduler_svc.model import ScheduleState, Timing, TimingKind
from scheduler_svc.store import SCHEDULE_LOG, ScheduleStore
from tests.scheduler_svc.records import schedule_record
from tests.support import PARTITIONS

ONE_SHOT = Timing(TimingKind.RUN_AT, run_at_ms=1)


def _event(kind: str, sid: str, version: int, state: ScheduleState) -> Message:
    return schedule_event(kind, schedule_record(sid, version, state, timing=ONE_SHOT))


async def test_store_append_many_checks_each_change_on_its_own(state_redis: Redis) -> None:
    store = ScheduleStore(state_redis, PARTITIONS)
    active, done = ScheduleState.ACTIVE, ScheduleState.COMPLETED
    for sid in ("a", "b", "c"):
        await store.append(sid, 0, _event("created", sid, 1, active))
    entries = await store.append_many(
        [
            ("a", 1, _event("updated", "a", 2, done)),
            ("b", 7, _event("updated", "b", 8, done)),  # stale: refused
            ("c", 1, _event("updated", "c", 2, done)),
            ("c", 1, _event("updated", "c", 2, done)),  # now stale too
        ]
    )
    assert entries[1] is None and entries[3] is None
    assert entries[0] is not None and entries[2] is not None and entries[0] < entries[2]
    assert await state_redis.xlen(SCHEDULE_LOG) == 5
    versions = await state_redis.hgetall("{sched}:versions")
    assert versions == {b"a": b"2", b"b": b"1", b"c": b"2"}
