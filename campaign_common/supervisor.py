"""Supervision of a service's background loops: restart after a crash, report up and down.

A service's background loops (log followers, gauges, the retry pump ...) catch the errors they
expect (Redis outages) themselves. Anything else is a bug or bad data, and must neither end
the other loops nor leave the service looking healthy with a loop gone. The `Supervisor` runs
each `Loop` in one TaskGroup and, per loop:

    start ─> up (gauge 1) ─> the loop raises an unexpected error, or returns unasked
          ─> logged with its traceback, down (gauge 0, health callback: not every loop is up)
          ─> backoff: jittered, exponential in the failures in a row, capped; a stop request
             ends the wait at once, so shutdown is never slowed by it
          ─> restart (restarts counter + 1) ─> up (health callback: every loop up again) ─> ...
    stop:  `request_stop` sets the stop event and asks each loop to return (cooperatively:
           no Redis command is cancelled half-way) ─> `run` returns once every loop returned

A fatal loop (the scraper's consumer: restarting it in place would lose what it holds) is not
restarted: its failure marks it down, stops the other loops the same cooperative way, and
`run` raises `LoopFailed` once they returned, so the process exits and its own supervisor
(systemd, Kubernetes) restarts it.

Metrics, by loop name, every name initialised when the supervisor is built:
``<prefix>_loop_up{loop}`` (1 running, 0 down or stopped) and
``<prefix>_loop_restarts_total{loop}``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from campaign_common.errors import CampaignCommonError
from campaign_common.tasks import pause, raise_if_cancelling

log = logging.getLogger(__name__)


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Loop:
    """One background loop. ``run`` returns once asked to stop (through ``request_stop`` or a
    stop event it shares with the supervisor); returning otherwise counts as a failure."""

    name: str
    run: Callable[[], Awaitable[None]]
    request_stop: Callable[[], None] = _nothing
    fatal: bool = False


@dataclass(frozen=True)
class Backoff:
    """Delay before a restart: ``initial_s * 2**(failures - 1)`` capped at ``max_s``, then
    drawn from its upper half (jitter that keeps a floor, so a crash loop stays slow)."""

    initial_s: float = 0.5
    max_s: float = 30.0

    def delay_s(self, failures: int) -> float:
        capped = min(self.max_s, self.initial_s * 2 ** min(max(failures, 1) - 1, 32))
        return random.uniform(capped / 2, capped)


@dataclass(frozen=True)
class LoopMetrics:
    up: Gauge
    restarts: Counter

    @classmethod
    def declare(cls, prefix: str, registry: CollectorRegistry = REGISTRY) -> LoopMetrics:
        """``<prefix>_loop_up{loop}`` and ``<prefix>_loop_restarts_total{loop}``."""
        return cls(
            Gauge(
                f"{prefix}_loop_up",
                "Background loops by name: 1 running, 0 down (crashed, waiting to restart)",
                ["loop"],
                registry=registry,
            ),
            Counter(
                f"{prefix}_loop_restarts_total",
                "Restarts of a background loop after an unexpected error",
                ["loop"],
                registry=registry,
            ),
        )


class LoopFailed(CampaignCommonError, RuntimeError):
    """A fatal loop failed; its error is the ``__cause__``."""


HealthCallback = Callable[[], Awaitable[None]]


class Supervisor:
    def __init__(
        self,
        loops: Sequence[Loop],
        metrics: LoopMetrics,
        *,
        stop: asyncio.Event,
        backoff: Backoff | None = None,
        on_health_change: HealthCallback | None = None,
    ) -> None:
        self._loops = tuple(loops)
        self._metrics = metrics
        self._stop = stop
        self._backoff = backoff or Backoff()
        self._on_health_change = on_health_change
        self._down: frozenset[str] = frozenset()  # replaced whole: read from other threads
        self._failure: LoopFailed | None = None
        for loop in self._loops:
            metrics.up.labels(loop=loop.name).set(0)
            metrics.restarts.labels(loop=loop.name)

    @property
    def all_up(self) -> bool:
        """False while a loop is down (between its crash and its restart)."""
        return not self._down

    def problems(self) -> list[str]:
        """What makes the service unhealthy now, one line each (none: healthy)."""
        return [f"background loop {name} is down" for name in sorted(self._down)]

    def request_stop(self) -> None:
        self._stop.set()
        for loop in self._loops:
            loop.request_stop()

    async def run(self) -> None:
        """Supervise every loop until all returned after a stop request (see module doc)."""
        async with asyncio.TaskGroup() as group:
            for loop in self._loops:
                group.create_task(self._supervise(loop), name=f"supervise-{loop.name}")
        if self._failure is not None:
            raise self._failure

    async def _supervise(self, loop: Loop) -> None:
        failures = 0
        while True:
            self._metrics.up.labels(loop=loop.name).set(1)
            started = time.monotonic()
            error = await self._run_once(loop)
            self._metrics.up.labels(loop=loop.name).set(0)
            if error is None:
                return  # stopped on request
            await self._set_down(loop.name, True)
            if loop.fatal:
                self._failure = LoopFailed(f"background loop {loop.name} failed")
                self._failure.__cause__ = error
                self.request_stop()
                return
            # A loop that ran well for a while starts its backoff from the beginning again.
            failures = 1 if time.monotonic() - started > self._backoff.max_s else failures + 1
            await pause(self._stop, self._backoff.delay_s(failures))
            if self._stop.is_set():
                return
            self._metrics.restarts.labels(loop=loop.name).inc()
            log.info("restarting background loop %s (failure %d in a row)", loop.name, failures)
            await self._set_down(loop.name, False)

    async def _run_once(self, loop: Loop) -> Exception | None:
        """Run the loop once; the error that ended it, or None when it stopped on request."""
        try:
            await loop.run()
        except Exception as exc:
            raise_if_cancelling()  # a cancelled redis-py command may surface as another error
            action = "stopping the service" if loop.fatal else "restarting it after a backoff"
            log.exception("background loop %s failed; %s", loop.name, action)
            return exc
        if self._stop.is_set():
            return None
        log.error("background loop %s returned without being asked to stop", loop.name)
        return RuntimeError(f"background loop {loop.name} returned unasked")

    async def _set_down(self, name: str, down: bool) -> None:
        was_up = self.all_up
        self._down = self._down | {name} if down else self._down - {name}
        if self.all_up == was_up or self._on_health_change is None:
            return
        try:
            await self._on_health_change()
        except Exception:
            log.exception("reporting the health of the background loops failed")
