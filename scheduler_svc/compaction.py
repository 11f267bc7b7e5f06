"""Log compaction: fold the schedule log into the snapshot and trim what the snapshot covers.

Every replica may run it (`scheduler_svc.snapshot` makes concurrent folds safe). Entries are
trimmed only once they are in the snapshot and older than ``keep_ms``, so a replica that is
briefly behind still finds them; one behind for longer reloads from the snapshot. With this,
the log holds at most ``keep_ms`` of changes however long the system runs (one-shot schedules
completing included), and start-up reads the snapshot plus that tail.
"""

from __future__ import annotations

import asyncio
import logging

from campaign_common.runs.emission import EmissionGuard
from campaign_common.runs.log import RunLog
from campaign_common.tasks import every
from campaign_common.timeutil import now_ms
from scheduler_svc.log_entries import decode_all, latest_guards
from scheduler_svc.snapshot import SnapshotStore
from scheduler_svc.store import ScheduleStore

log = logging.getLogger(__name__)


class Compactor:
    def __init__(
        self,
        store: ScheduleStore,
        snapshots: SnapshotStore,
        runs: RunLog,
        *,
        batch: int,
        keep_ms: int,
        interval_s: float,
    ) -> None:
        self._store = store
        self._snapshots = snapshots
        self._runs = runs
        self._batch = batch
        self._keep_ms = keep_ms
        self._interval_s = interval_s

    async def run(self, stop: asyncio.Event) -> None:
        await every(self._interval_s, stop, self.once, "log compaction")

    async def once(self) -> tuple[int, int]:
        """Fold every entry after the snapshot, then trim; (entries folded, entries trimmed).

        A batch's guards are raised before it is folded: a schedule in the snapshot never needs
        its guard raised by a reader (its log entry may be gone by then). A deleted schedule's
        run counters go once its delete is folded.
        """
        position = await self._snapshots.position()
        folded = 0
        while entries := await self._store.read_after(position, self._batch):
            decoded = decode_all(entries)
            latest: dict[str, EmissionGuard] = {}
            latest_guards(decoded, latest)
            guards = list(latest.values())
            await self._store.raise_guards(guards)
            position = await self._snapshots.fold(decoded)
            await self._runs.forget_schedules(
                [(g.schedule_id, g.campaign_id) for g in guards if g.deleted_at_ms]
            )
            folded += len(entries)
        limit = min(position, (now_ms() - self._keep_ms, 0))
        trimmed = await self._snapshots.trim_before(limit) if limit > (0, 0) else 0
        if folded or trimmed:
            log.info("log compaction", extra={"folded": folded, "trimmed": trimmed})
        return folded, trimmed
