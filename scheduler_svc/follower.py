"""Replays the schedule event log into the registry at start-up, then tails it for good."""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from campaign_common.envelope import decode_body
from campaign_common.tasks import pause, raise_if_cancelling
from scheduler_svc.codec import schedule_from_event
from scheduler_svc.registry import Registry
from scheduler_svc.store import Entry, ScheduleStore

log = logging.getLogger(__name__)


class LogFollower:
    def __init__(self, store: ScheduleStore, registry: Registry, *, block_ms: int, batch: int):
        self._store = store
        self._registry = registry
        self._block_ms = block_ms
        self._batch = batch

    async def replay(self) -> int:
        """Apply the whole log as it is now; returns the number of entries read."""
        total = 0
        while entries := await self._store.read_after(self._registry.applied, self._batch):
            for entry in entries:
                await self._apply(entry)
            total += len(entries)
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Tail the log until ``stop``; Redis outages are logged and retried with backoff."""
        delay_s = 0.1
        while not stop.is_set():
            try:
                entries = await self._store.tail(
                    self._registry.applied, self._block_ms, self._batch
                )
                for entry in entries:
                    await self._apply(entry)
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

    async def _apply(self, entry: Entry) -> None:
        entry_id, envelope = entry
        body = decode_body(envelope) if envelope is not None else None
        decoded = schedule_from_event(body) if body is not None else None
        if decoded is None:
            await self._registry.apply(entry_id, None, False)
            return
        schedule, deleted = decoded
        await self._registry.apply(entry_id, schedule, deleted)
