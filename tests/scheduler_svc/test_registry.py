"""The registry's order, pages and counts follow every change (no full recount, no sort)."""

from __future__ import annotations

import asyncio
import random

import pytest

from scheduler_svc.model import ScheduleState
from scheduler_svc.registry import Registry
from tests.scheduler_svc.records import schedule_record
from tests.support import eventually


async def test_registry_pages_counts_and_order_follow_changes() -> None:
    registry = Registry()
    ids = [f"s{n:05d}" for n in range(300)]
    shuffled = ids[:]
    random.Random(7).shuffle(shuffled)  # out-of-order inserts too
    position = 0
    for sid in shuffled:
        position += 1
        await registry.apply((position, 0), schedule_record(sid), deleted=False)
    for sid in ids[::3]:
        position += 1
        await registry.apply((position, 0), schedule_record(sid, 2, ScheduleState.PAUSED), False)
    for sid in ids[1::3]:
        position += 1
        await registry.apply((position, 0), schedule_record(sid, 2), deleted=True)

    kept = [sid for n, sid in enumerate(ids) if n % 3 != 1]
    assert [s.schedule_id for s in registry.all()] == kept
    assert len(registry) == len(kept)
    assert registry.counts()[ScheduleState.PAUSED] == 100
    assert registry.counts()[ScheduleState.ACTIVE] == 100

    seen: list[str] = []
    after, more = "", True
    while more:
        page, more = registry.page_after(after, 33)
        seen += [s.schedule_id for s in page]
        after = page[-1].schedule_id
    assert seen == kept


async def test_registry_ignores_versions_it_has_seen() -> None:
    registry = Registry()
    await registry.apply((1, 0), schedule_record("a", 2, ScheduleState.PAUSED), False)
    await registry.apply((2, 0), schedule_record("a", 1), False)  # older: ignored
    await registry.apply((3, 0), schedule_record("a", 2), deleted=True)  # same version: ignored
    assert registry.counts()[ScheduleState.PAUSED] == 1
    assert registry.counts()[ScheduleState.ACTIVE] == 0
    assert [s.version for s in registry.all()] == [2]


async def _waiting(registry: Registry, count: int) -> bool:
    return registry.waiting == count


async def test_registry_wait_applied_answers_each_waiter_at_its_entry_or_times_out() -> None:
    registry = Registry()
    early = asyncio.create_task(registry.wait_applied((1, 0), timeout_s=30))
    late = asyncio.create_task(registry.wait_applied((3, 0), timeout_s=30))
    await eventually(lambda: _waiting(registry, 2), timeout_s=5, what="both waiting")
    await registry.apply((1, 0), schedule_record("a"), deleted=False)
    await early  # woken by its entry; the later one still waits
    assert not late.done()
    with pytest.raises(TimeoutError):  # its entry never comes
        await registry.wait_applied((2, 0), timeout_s=0.01)
    await registry.apply((3, 0), schedule_record("b"), deleted=False)  # steps over the dropped one
    await late
    await registry.wait_applied((2, 0), timeout_s=0)  # applied by now: answers at once
