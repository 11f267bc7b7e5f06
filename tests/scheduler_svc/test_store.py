"""The schedule store's batched append: each change checked and appended on its own."""

from __future__ import annotations

from google.protobuf.message import Message
from redis.asyncio import Redis

from scheduler_svc.codec import schedule_event
from scheduler_svc.model import ScheduleState, Timing, TimingKind
from scheduler_svc.store import SCHEDULE_LOG, Change, ScheduleStore
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
    appended = await store.append_many(
        [
            Change("a", 1, _event("updated", "a", 2, done)),
            Change("b", 7, _event("updated", "b", 8, done)),  # stale: refused
            Change("c", 1, _event("updated", "c", 2, done)),
            Change("c", 1, _event("updated", "c", 2, done)),  # now stale too
        ]
    )
    entries = [each.entry for each in appended]
    assert entries[1] is None and entries[3] is None
    assert (appended[1].version, appended[3].version) == (1, 2)  # the versions they were at
    assert entries[0] is not None and entries[2] is not None and entries[0] < entries[2]
    assert await state_redis.xlen(SCHEDULE_LOG) == 5
    versions = await state_redis.hgetall("{sched}:versions")
    assert versions == {b"a": b"2", b"b": b"1", b"c": b"2"}


async def test_store_append_many_appends_once_per_operation_id(state_redis: Redis) -> None:
    store = ScheduleStore(state_redis, PARTITIONS)
    active = ScheduleState.ACTIVE
    first, again = await store.append_many(
        [
            Change("x1", 0, _event("created", "x1", 1, active), op_id="create-1"),
            Change("x2", 0, _event("created", "x2", 1, active), op_id="create-1"),  # a retry
        ]
    )
    assert first.entry is not None and not first.repeat
    assert again.entry == first.entry and again.repeat  # answered the first change's entry
    (later,) = await store.append_many(
        [Change("x3", 0, _event("created", "x3", 1, active), op_id="create-1")]
    )
    assert later.entry == first.entry and later.repeat
    assert await state_redis.xlen(SCHEDULE_LOG) == 1
    assert await state_redis.hgetall("{sched}:versions") == {b"x1": b"1"}


async def test_store_a_refused_change_leaves_its_operation_id_free(state_redis: Redis) -> None:
    store = ScheduleStore(state_redis, PARTITIONS)
    event = _event("created", "y", 1, ScheduleState.ACTIVE)
    (refused,) = await store.append_many([Change("y", 5, event, op_id="op-y")])
    assert refused.entry is None and refused.version == 0 and not refused.repeat
    (appended,) = await store.append_many([Change("y", 0, event, op_id="op-y")])
    assert appended.entry is not None and not appended.repeat


async def test_store_answers_an_operation_id_the_single_append_recorded(
    state_redis: Redis,
) -> None:
    # A create retried across an upgrade: the one-change script stored its reply as JSON.
    await state_redis.set("{sched}:op:create-old", '[1,"1700000000000-3"]')
    store = ScheduleStore(state_redis, PARTITIONS)
    event = _event("created", "z", 1, ScheduleState.ACTIVE)
    (appended,) = await store.append_many([Change("z", 0, event, op_id="create-old")])
    assert appended.entry == (1700000000000, 3) and appended.repeat
    assert await state_redis.xlen(SCHEDULE_LOG) == 0
