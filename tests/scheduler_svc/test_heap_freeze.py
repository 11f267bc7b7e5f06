"""The heap freeze of a burst: the collector's full passes skip the long-lived heap while a
burst's fires run, and everything is thawed when they are done or at the cap."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from scheduler_svc.heap_freeze import BURST_YOUNG_THRESHOLD, HeapFreeze
from scheduler_svc.model import Timing, TimingKind
from scheduler_svc.timer import Timer
from tests.scheduler_svc.records import schedule_record
from tests.support import eventually


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def _waiting(gate: asyncio.Event, n: int) -> list[asyncio.Task[None]]:
    async def fire() -> None:
        await gate.wait()

    return [asyncio.create_task(fire()) for _ in range(n)]


async def test_heap_freeze_holds_until_every_held_fire_is_done() -> None:
    young = gc.get_threshold()[0]
    freeze = HeapFreeze(max_s=60)
    first, second = asyncio.Event(), asyncio.Event()
    early, late = _waiting(first, 3), _waiting(second, 2)
    freeze.hold_until_done(early)
    freeze.hold_until_done(late)
    assert freeze.frozen and gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == max(young, BURST_YOUNG_THRESHOLD)
    first.set()
    await asyncio.gather(*early)
    assert freeze.frozen  # the later fires still run
    second.set()
    await asyncio.gather(*late)
    assert not freeze.frozen and gc.get_freeze_count() == 0
    assert gc.get_threshold()[0] == young


async def test_heap_freeze_thaws_at_its_cap_while_fires_hang() -> None:
    freeze = HeapFreeze(max_s=0.05)
    hung = _waiting(asyncio.Event(), 2)
    freeze.hold_until_done(hung)
    assert freeze.frozen

    async def thawed() -> bool:
        return not freeze.frozen and gc.get_freeze_count() == 0

    await eventually(thawed, timeout_s=10, what="thawed at the cap")
    # A burst after the cap is held on its own: the hung fires ending does not thaw it.
    gate = asyncio.Event()
    later = _waiting(gate, 1)
    freeze.hold_until_done(later)
    for task in hung:
        task.cancel()
    await asyncio.gather(*hung, return_exceptions=True)
    assert freeze.frozen
    gate.set()
    await asyncio.gather(*later)
    assert not freeze.frozen


async def test_timer_burst_fires_run_frozen_and_thaw_after() -> None:
    n = 600  # more than one wake slice: a burst
    seen_frozen: list[bool] = []
    gate = asyncio.Event()

    async def on_fire(schedule: object, fire_ms: int) -> None:
        seen_frozen.append(gc.get_freeze_count() > 0)
        await gate.wait()

    timer = Timer(on_fire, catch_up_window_ms=60_000)
    timer.start()
    try:
        due_ms = 1_000  # long past, within the catch-up window from 0
        schedules = [
            schedule_record(
                f"s{i}", timing=Timing(TimingKind.RUN_AT, run_at_ms=due_ms), created_at_ms=1
            )
            for i in range(n)
        ]
        timer.sync_many(schedules, lambda _: 0)

        async def all_started() -> bool:
            return len(seen_frozen) == n

        await eventually(all_started, what="every fire of the burst started")
        assert gc.get_freeze_count() > 0
        # Even the first slice's fires run frozen: they start after the wake held them.
        assert all(seen_frozen)
        gate.set()

        async def thawed() -> bool:
            return gc.get_freeze_count() == 0

        await eventually(thawed, what="thawed once the burst's fires are done")
    finally:
        timer.shutdown()
