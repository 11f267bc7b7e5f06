"""All Redis access of the scraper: the runs consumer group, run records, campaign locks.

Run keys, streams and scripts belong to `campaign_common.runlog` (used here, never written
directly); lock keys belong to `campaign_common.redlock`. This module owns the one name the
scraper adds: the lock resource of a campaign, ``campaign:<campaign_id>`` (so its key on every
lock master is ``lock:{campaign:<campaign_id>}``). Domain types go in, protobuf events come
out only here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from campaign_common.redlock import Lock, Redlock
from campaign_common.runlog import RUNS_STREAM, SCRAPER_GROUP, RunLog, RunState
from campaign_common.timeutil import ms_to_timestamp, now_ms
from campaigns.v1 import events_pb2, run_pb2
from scraper_svc.runner import PageResult, RunRequest

log = logging.getLogger(__name__)

StreamEntry = tuple[str, dict[bytes, bytes] | None]
_FINISHED = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.SKIPPED})


def campaign_lock_resource(campaign_id: str) -> str:
    """The Redlock resource that serialises every run of one campaign, whatever schedule."""
    return f"campaign:{campaign_id}"


class ScraperStore:
    """Implements `scraper_svc.runner.RunStore` plus the consumer-group reads."""

    def __init__(self, redis: Redis, locks: Redlock, *, lock_ttl_ms: int, results_cap: int) -> None:
        self._redis = redis
        self._locks = locks
        self._lock_ttl_ms = lock_ttl_ms
        self._runs = RunLog(redis, results_cap=results_cap)

    async def ensure_group(self) -> None:
        """Create the consumer group (and the stream) if missing; from the first entry on."""
        try:
            await self._redis.xgroup_create(RUNS_STREAM, SCRAPER_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(
        self, consumer: str, *, after: str, count: int, block_ms: int | None
    ) -> list[StreamEntry]:
        """XREADGROUP: ``after=">"`` for new entries, a stream id for this consumer's pending
        ones (their fields are None when the entry was deleted from the stream meanwhile)."""
        try:
            reply: Any = await self._redis.xreadgroup(
                SCRAPER_GROUP, consumer, {RUNS_STREAM: after}, count=count, block=block_ms
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            log.warning("consumer group %s is gone; creating it again", SCRAPER_GROUP)
            await self.ensure_group()
            return []
        return [
            (entry_id.decode(), fields or None)
            for _, entries in reply or []
            for entry_id, fields in entries
        ]

    async def ack(self, entry_id: str) -> None:
        await self._redis.xack(RUNS_STREAM, SCRAPER_GROUP, entry_id)

    async def lock_campaign(self, campaign_id: str) -> Lock | None:
        return await self._locks.acquire(campaign_lock_resource(campaign_id), self._lock_ttl_ms)

    async def unlock(self, lock: Lock) -> None:
        await self._locks.release(lock)

    async def is_finished(self, run: RunRequest) -> bool:
        record = await self._runs.get_run(run.run_id)
        return record is not None and record.attempt == run.attempt and record.state in _FINISHED

    async def record_started(self, run: RunRequest, worker: str) -> None:
        at_ms = now_ms()
        event = events_pb2.RunStarted(
            run_id=run.run_id, attempt=run.attempt, worker=worker, started_at=ms_to_timestamp(at_ms)
        )
        await self._runs.append_event(
            event, state=RunState.RUNNING, changes={"started_at_ms": at_ms}
        )

    async def record_results(self, run: RunRequest, pages: Sequence[PageResult]) -> None:
        await self._runs.add_results(run.campaign_id, [_result(run, page) for page in pages])

    async def record_succeeded(self, run: RunRequest, pages: int) -> None:
        at_ms = now_ms()
        event = events_pb2.RunSucceeded(
            run_id=run.run_id, attempt=run.attempt, pages=pages, finished_at=ms_to_timestamp(at_ms)
        )
        await self._runs.append_event(
            event, state=RunState.SUCCEEDED, changes={"finished_at_ms": at_ms}
        )

    async def record_failed(self, run: RunRequest, error: str) -> None:
        at_ms = now_ms()
        event = events_pb2.RunFailed(
            run_id=run.run_id, attempt=run.attempt, error=error, finished_at=ms_to_timestamp(at_ms)
        )
        await self._runs.append_event(
            event, state=RunState.FAILED, changes={"finished_at_ms": at_ms, "error": error}
        )

    async def record_skipped(self, run: RunRequest, reason: str) -> None:
        at_ms = now_ms()
        event = events_pb2.RunSkipped(
            run_id=run.run_id,
            attempt=run.attempt,
            reason=reason,
            finished_at=ms_to_timestamp(at_ms),
        )
        await self._runs.append_event(
            event, state=RunState.SKIPPED, changes={"finished_at_ms": at_ms, "error": reason}
        )


def _result(run: RunRequest, page: PageResult) -> run_pb2.ScrapeResult:
    return run_pb2.ScrapeResult(
        run_id=run.run_id,
        campaign_id=run.campaign_id,
        url=page.url,
        status_code=page.status_code,
        fields=[_field(name, text) for name, text in page.fields],
        fetched_at=ms_to_timestamp(page.fetched_at_ms),
    )


def _field(name: str, text: str | None) -> run_pb2.ExtractedField:
    field = run_pb2.ExtractedField(name=name)
    if text is not None:
        field.text = text
    return field
