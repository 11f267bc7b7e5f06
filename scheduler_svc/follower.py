"""Loads the schedule snapshot and replays the log after it into the registry at start-up,
then tails the log for good; a follower that falls behind the log's trim point loads the
snapshot again (`scheduler_svc.snapshot`).

Before the registry applies an entry (and so before the timer arms what it says), the entry's
emission guard is raised (`ScheduleStore.raise_guards`): a command whose own raise failed
still converges, the replay at start-up writes every schedule's guard (one pipeline per
batch), and a command, which waits until its replica applied its entry, never answers before
its guard is raised.
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from campaign_common.runs.emission import EmissionGuard
from campaign_common.tasks import pause, raise_if_cancelling
from scheduler_svc.log_entries import Decoded, decode_all, latest_guards
from scheduler_svc.registry import Registry
from scheduler_svc.snapshot import SnapshotStore, Stale, check_trim_point
from scheduler_svc.store import Entry, ScheduleStore

log = logging.getLogger(__name__)


class LogFollower:
    def __init__(
        self,
        store: ScheduleStore,
        registry: Registry,
        snapshots: SnapshotStore,
        *,
        block_ms: int,
        batch: int,
    ):
        self._store = store
        self._registry = registry
        self._snapshots = snapshots
        self._block_ms = block_ms
        self._batch = batch

    async def replay(self) -> int:
        """Load the snapshot and apply the log after it; returns schedules + entries read."""
        while True:
            try:
                return await self._load()
            except Stale as exc:
                log.warning("%s: loading the snapshot again", exc)

    async def _load(self) -> int:
        """The snapshot, then the log as it is now after the snapshot's position.

        Snapshot schedules need no guard raised (the compactor raised them before folding).
        The log's guards are raised once at the end, each schedule's from its last entry only
        (the timer arms nothing before this returns), so a replay never raises a guard to a
        version that a later entry of the same replay supersedes.
        """
        snapshot = await self._snapshots.load()
        await self._registry.reset(snapshot.schedules, snapshot.position)
        total = len(snapshot.schedules)
        guards: dict[str, EmissionGuard] = {}
        while True:
            before = self._registry.applied
            entries = await self._store.read_after(before, self._batch)
            await self._snapshots.check_not_trimmed(before)
            if not entries:
                break
            decoded = decode_all(entries)
            latest_guards(decoded, guards)
            await self._apply_all(decoded)
            total += len(entries)
        latest = list(guards.values())
        for start in range(0, len(latest), self._batch):
            await self._store.raise_guards(latest[start : start + self._batch])
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Tail the log until ``stop``; Redis outages are logged and retried with backoff."""
        delay_s = 0.1
        while not stop.is_set():
            try:
                await self._follow_once()
            except RedisError as exc:
                raise_if_cancelling()
                log.warning("schedule log unreachable (%s); retrying in %.1fs", exc, delay_s)
            except Exception:
                raise_if_cancelling()
                log.exception("tailing the schedule log failed; retrying in %.1fs", delay_s)
            else:
                delay_s = 0.1
                continue
            await pause(stop, delay_s)  # backoff while the log is unreachable
            delay_s = min(delay_s * 2, 5.0)

    async def _follow_once(self) -> None:
        before = self._registry.applied
        entries, trimmed = await self._store.tail(before, self._block_ms, self._batch)
        try:
            check_trim_point(trimmed, before)
        except Stale as exc:
            log.warning("%s while this replica was behind: loading the snapshot", exc)
            await self.replay()
            return
        await self._apply_batch(entries)

    async def _apply_batch(self, entries: list[Entry]) -> None:
        """Raise the batch's guards, then apply it (a failed raise applies nothing: re-read)."""
        decoded = decode_all(entries)
        guards: dict[str, EmissionGuard] = {}
        latest_guards(decoded, guards)
        await self._store.raise_guards(list(guards.values()))
        await self._apply_all(decoded)

    async def _apply_all(self, decoded: list[Decoded]) -> None:
        for each in decoded:
            await self._registry.apply(each.entry_id, each.schedule, each.deleted)
