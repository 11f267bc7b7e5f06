"""The scheduler's housekeeping loop: stream retention, forgetting gone consumers and the
failure streaks of deleted schedules (`scheduler_svc.outcome_store.StreakSweep`).

Every replica runs it every ``interval_s``; the work is idempotent
(`campaign_common.runs.retention`), so replicas running it together only repeat it.
Redis outages are logged and waited out.
"""

from __future__ import annotations

import asyncio
import logging

from campaign_common.runs.keys import OUTCOME_GROUP, SCRAPER_GROUP, Partitions
from campaign_common.runs.retention import Retention, StreamRetention
from campaign_common.tasks import every
from campaign_common.timeutil import now_ms
from scheduler_svc.outcome_store import StreakSweep

log = logging.getLogger(__name__)


def stream_rules(
    partitions: Partitions,
    runs_retention_s: float,
    events_retention_s: float,
    dead_letters_retention_s: float,
) -> list[StreamRetention]:
    """The streams the scheduler keeps bounded (each partition's), with the groups that read
    them."""
    rules = []
    for p in partitions:
        rules += [
            StreamRetention(p.runs_stream, int(runs_retention_s * 1000), (SCRAPER_GROUP,)),
            StreamRetention(p.events_stream, int(events_retention_s * 1000), (OUTCOME_GROUP,)),
            StreamRetention(p.dead_stream, int(dead_letters_retention_s * 1000)),
        ]
    return rules


class Housekeeping:
    def __init__(
        self,
        retention: Retention,
        rules: list[StreamRetention],
        *,
        interval_s: float,
        streaks: StreakSweep | None = None,
    ) -> None:
        self._retention = retention
        self._rules = rules
        self._interval_s = interval_s
        self._streaks = streaks

    async def run(self, stop: asyncio.Event) -> None:
        await every(self._interval_s, stop, self.once, "housekeeping")

    async def once(self) -> tuple[int, int, int]:
        """One round; (entries trimmed, consumers forgotten, streak fields dropped)."""
        trimmed = forgotten = 0
        for rule in self._rules:
            trimmed += await self._retention.trim(rule, now_ms())
            forgotten += await self._retention.forget_idle_consumers(rule)
        streaks = await self._streaks.once() if self._streaks is not None else 0
        if trimmed or forgotten or streaks:
            log.info(
                "housekeeping",
                extra={
                    "trimmed_entries": trimmed,
                    "forgotten_consumers": forgotten,
                    "dropped_streaks": streaks,
                },
            )
        return trimmed, forgotten, streaks
