"""The loop supervisor: restarts with backoff, reports down/up, stops promptly, fatal loops."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import CollectorRegistry

from campaign_common.supervisor import Backoff, Loop, LoopFailed, LoopMetrics, Supervisor


def _metrics() -> tuple[LoopMetrics, CollectorRegistry]:
    registry = CollectorRegistry()  # the test's own: no other test's samples
    return LoopMetrics.declare("test", registry), registry


def _sample(registry: CollectorRegistry, name: str, loop: str) -> float | None:
    return registry.get_sample_value(name, {"loop": loop})


class Recorder:
    """The health the supervisor reports, in order, and an event per state reached."""

    def __init__(self, supervisor_ref: list[Supervisor]) -> None:
        self.states: list[bool] = []
        self.down = asyncio.Event()
        self.up_again = asyncio.Event()
        self._ref = supervisor_ref

    async def __call__(self) -> None:
        up = self._ref[0].all_up
        self.states.append(up)
        (self.up_again if up else self.down).set()


async def test_a_loop_that_raises_once_is_logged_reported_down_and_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics, registry = _metrics()
    stop = asyncio.Event()
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("poison")
        await stop.wait()

    ref: list[Supervisor] = []
    health = Recorder(ref)
    supervisor = Supervisor(
        [Loop("flaky", flaky), Loop("steady", stop.wait)],
        metrics,
        stop=stop,
        backoff=Backoff(initial_s=0.05, max_s=0.05),
        on_health_change=health,
    )
    ref.append(supervisor)
    # every label value exists before anything ran
    assert _sample(registry, "test_loop_up", "steady") == 0
    assert _sample(registry, "test_loop_restarts_total", "flaky") == 0
    with caplog.at_level(logging.INFO, logger="campaign_common.supervisor"):
        task = asyncio.create_task(supervisor.run())
        await asyncio.wait_for(health.down.wait(), 5)
        assert not supervisor.all_up
        assert supervisor.problems() == ["background loop flaky is down"]
        await asyncio.wait_for(health.up_again.wait(), 5)
        assert supervisor.all_up and supervisor.problems() == []
        assert _sample(registry, "test_loop_up", "flaky") == 1
        assert _sample(registry, "test_loop_up", "steady") == 1
        assert _sample(registry, "test_loop_restarts_total", "flaky") == 1
        assert _sample(registry, "test_loop_restarts_total", "steady") == 0
        supervisor.request_stop()
        await asyncio.wait_for(task, 5)
    assert health.states == [False, True]
    assert calls == 2
    (failure,) = [r for r in caplog.records if r.exc_info and r.levelno == logging.ERROR]
    assert "flaky" in failure.getMessage()
    assert failure.exc_info is not None and isinstance(failure.exc_info[1], ValueError)
    assert _sample(registry, "test_loop_up", "flaky") == 0  # stopped


async def test_stopping_is_not_slowed_by_a_restart_backoff() -> None:
    metrics, _ = _metrics()
    stop = asyncio.Event()

    async def broken() -> None:
        raise ValueError("always")

    ref: list[Supervisor] = []
    health = Recorder(ref)
    supervisor = Supervisor(
        [Loop("broken", broken)],
        metrics,
        stop=stop,
        backoff=Backoff(initial_s=600, max_s=600),
        on_health_change=health,
    )
    ref.append(supervisor)
    task = asyncio.create_task(supervisor.run())
    await asyncio.wait_for(health.down.wait(), 5)  # now in a backoff of 300 s or more
    supervisor.request_stop()
    await asyncio.wait_for(task, 2)


async def test_a_loop_that_returns_unasked_is_restarted() -> None:
    metrics, registry = _metrics()
    stop = asyncio.Event()
    calls = 0

    async def quits_once() -> None:
        nonlocal calls
        calls += 1
        if calls > 1:
            await stop.wait()

    ref: list[Supervisor] = []
    health = Recorder(ref)
    supervisor = Supervisor(
        [Loop("quitter", quits_once)],
        metrics,
        stop=stop,
        backoff=Backoff(initial_s=0.01, max_s=0.01),
        on_health_change=health,
    )
    ref.append(supervisor)
    task = asyncio.create_task(supervisor.run())
    await asyncio.wait_for(health.up_again.wait(), 5)
    assert _sample(registry, "test_loop_restarts_total", "quitter") == 1
    supervisor.request_stop()
    await asyncio.wait_for(task, 5)


async def test_a_fatal_loop_stops_the_others_cooperatively_and_raises() -> None:
    metrics, registry = _metrics()
    pump_stop = asyncio.Event()
    pump_ended_cleanly = False

    async def consumer() -> None:
        raise ValueError("consumer bug")

    async def pump() -> None:
        nonlocal pump_ended_cleanly
        await pump_stop.wait()  # returns once asked, never cancelled
        pump_ended_cleanly = True

    supervisor = Supervisor(
        [Loop("consumer", consumer, fatal=True), Loop("pump", pump, pump_stop.set)],
        metrics,
        stop=asyncio.Event(),
    )
    with pytest.raises(LoopFailed) as raised:
        await asyncio.wait_for(supervisor.run(), 5)
    assert isinstance(raised.value.__cause__, ValueError)
    assert pump_ended_cleanly
    assert not supervisor.all_up
    assert _sample(registry, "test_loop_restarts_total", "consumer") == 0


def test_backoff_grows_exponentially_with_jitter_up_to_its_cap() -> None:
    backoff = Backoff(initial_s=0.5, max_s=8.0)
    for failures, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (9, 8.0), (1000, 8.0)):
        delays = [backoff.delay_s(failures) for _ in range(50)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays), failures
        assert len(set(delays)) > 1, "jittered"
