"""Redis access of the run-outcome follower: its consumer group on the run events stream and
the failure streaks.

Keys:
    {runs}:events        run events stream (owned by `campaign_common.runlog`); this module
                         only reads it through the consumer group ``schedulers``
    {sched}:streaks      hash ``s:<schedule id>`` / ``c:<campaign id>`` -> consecutive failures
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from campaign_common.envelope import Envelope, EnvelopeError
from campaign_common.runlog import RUN_EVENTS_STREAM

OUTCOME_GROUP = "schedulers"
_STREAKS = "{sched}:streaks"

Event = tuple[str, Envelope | None]


def _events(reply: Any) -> list[Event]:
    events: list[Event] = []
    for entry_id, fields in reply:
        try:
            envelope: Envelope | None = Envelope.from_fields(fields) if fields else None
        except EnvelopeError:
            envelope = None
        events.append((entry_id.decode(), envelope))
    return events


class OutcomeStore:
    def __init__(self, redis: Redis, consumer: str) -> None:
        self._redis = redis
        self._consumer = consumer

    async def ensure_group(self) -> None:
        """The group starts at the stream's end: outcomes from before it existed are history."""
        try:
            await self._redis.xgroup_create(RUN_EVENTS_STREAM, OUTCOME_GROUP, id="$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, count: int, block_ms: int) -> list[Event]:
        reply: Any = await self._redis.xreadgroup(
            OUTCOME_GROUP, self._consumer, {RUN_EVENTS_STREAM: ">"}, count=count, block=block_ms
        )
        return [event for _, entries in reply or [] for event in _events(entries)]

    async def claim_stale(self, idle_ms: int, count: int) -> list[Event]:
        """Entries a dead replica read but never acked, now owned by this one."""
        reply: Any = await self._redis.xautoclaim(
            RUN_EVENTS_STREAM, OUTCOME_GROUP, self._consumer, idle_ms, "0-0", count=count
        )
        return _events(reply[1])

    async def ack(self, entry_id: str) -> None:
        await self._redis.xack(RUN_EVENTS_STREAM, OUTCOME_GROUP, entry_id)

    async def failed(self, schedule_id: str, campaign_id: str) -> tuple[int, int]:
        """One more consecutive failure; (schedule streak, campaign streak)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(_STREAKS, f"s:{schedule_id}", 1)
            pipe.hincrby(_STREAKS, f"c:{campaign_id}", 1)
            schedule_streak, campaign_streak = await pipe.execute()
        return int(schedule_streak), int(campaign_streak)

    async def succeeded(self, schedule_id: str, campaign_id: str) -> None:
        await self._redis.hdel(_STREAKS, f"s:{schedule_id}", f"c:{campaign_id}")

    async def reset_schedule(self, schedule_id: str) -> None:
        await self._redis.hdel(_STREAKS, f"s:{schedule_id}")
