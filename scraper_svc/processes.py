"""Several scraper worker processes under one command (``SCRAPER_PROCESSES``), supervised.

One worker process runs on one core (asyncio, one event loop); a host with more cores runs
several. The parent connects to nothing: it starts ``processes`` children
(``python -m scraper_svc --worker <i>``), each a complete worker with the same settings
(inherited environment) except its consumer name, ``<consumer_name>-<i>`` (stable across
restarts of that child, so a restarted child resumes its own pending entries), and its
metrics port, ``metrics_port + i`` when one is set.

    start:  every child ─> wait for any child to exit
    a child exits while not stopping ─> logged ─> restarted after a backoff (exponential in
            its quick deaths in a row, capped); a child that keeps dying within
            `MIN_UPTIME_S` of its start `MAX_QUICK_DEATHS` times in a row (bad settings, an
            unreachable Redis at start-up) stops the whole command with exit status 1
    SIGTERM / SIGINT ─> SIGTERM to every child (each drains: finishes its runs within
            shutdown_grace_s and hands back its entries) ─> wait for all, at most
            shutdown_grace_s + `EXIT_MARGIN_S`; a child still there then is killed
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from dataclasses import dataclass, field

from scraper_svc.config import ScraperSettings

log = logging.getLogger(__name__)

MIN_UPTIME_S = 5.0
MAX_QUICK_DEATHS = 5
RESTART_DELAY_MAX_S = 10.0
# Beyond a child's own grace period: its read block, the hand-back, its exit.
EXIT_MARGIN_S = 10.0


def worker_settings(settings: ScraperSettings, index: int) -> ScraperSettings:
    """The settings of child ``index``: its own consumer name and metrics port, one process."""
    port = settings.metrics_port
    return settings.model_copy(
        update={
            "processes": 1,
            "consumer_name": f"{settings.consumer_name}-{index}",
            "metrics_port": port + index if port else port,
        }
    )


@dataclass
class _Child:
    index: int
    process: asyncio.subprocess.Process | None = None
    started: float = 0.0
    quick_deaths: int = 0
    restart_at: float = field(default=0.0)


class WorkerGroup:
    def __init__(self, settings: ScraperSettings) -> None:
        self._settings = settings
        self._children = [_Child(index) for index in range(settings.processes)]
        self._stop = asyncio.Event()
        self.failed = False

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Supervise the children until a stop request (or a child that cannot start)."""
        log.info("starting %d scraper worker processes", len(self._children))
        try:
            while not self._stop.is_set():
                await self._start_due()
                await self._wait_for_exit_or_stop()
                self._reap()
        finally:
            await self._stop_all()

    async def _start_due(self) -> None:
        now = time.monotonic()
        for child in self._children:
            if child.process is None and now >= child.restart_at:
                child.process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "scraper_svc",
                    "--worker",
                    str(child.index),
                )
                child.started = now

    async def _wait_for_exit_or_stop(self) -> None:
        waits = [
            asyncio.ensure_future(child.process.wait())
            for child in self._children
            if child.process is not None
        ]
        stop = asyncio.ensure_future(self._stop.wait())
        pending_restarts = [c.restart_at for c in self._children if c.process is None]
        timeout_s = max(0.0, min(pending_restarts) - time.monotonic()) if pending_restarts else None
        try:
            await asyncio.wait([*waits, stop], timeout=timeout_s, return_when="FIRST_COMPLETED")
        finally:
            for future in (*waits, stop):
                future.cancel()

    def _reap(self) -> None:
        now = time.monotonic()
        for child in self._children:
            process = child.process
            if process is None or process.returncode is None:
                continue
            child.process = None
            if self._stop.is_set():
                continue
            quick = now - child.started < MIN_UPTIME_S
            child.quick_deaths = child.quick_deaths + 1 if quick else 0
            delay_s = min(RESTART_DELAY_MAX_S, 0.5 * 2**child.quick_deaths)
            log.error(
                "scraper worker %d exited with status %s; restarting it in %.1f s",
                child.index,
                process.returncode,
                delay_s,
            )
            if child.quick_deaths >= MAX_QUICK_DEATHS:
                log.error(
                    "scraper worker %d died %d times within %.0f s of its start; stopping",
                    child.index,
                    child.quick_deaths,
                    MIN_UPTIME_S,
                )
                self.failed = True
                self._stop.set()
            child.restart_at = now + delay_s

    async def _stop_all(self) -> None:
        running = [c.process for c in self._children if c.process is not None]
        for process in running:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):  # it exited just now
                    process.send_signal(signal.SIGTERM)
        if not running:
            return
        deadline_s = self._settings.shutdown_grace_s + EXIT_MARGIN_S
        waits = [asyncio.ensure_future(process.wait()) for process in running]
        await asyncio.wait(waits, timeout=deadline_s)
        for process in running:
            if process.returncode is None:
                log.error("scraper worker pid %d did not stop in time; killing it", process.pid)
                process.kill()
                await process.wait()


async def supervise(settings: ScraperSettings) -> bool:
    """Run the worker processes until SIGTERM or SIGINT; False if a worker could not run."""
    group = WorkerGroup(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, group.request_stop)
    await group.run()
    return not group.failed
