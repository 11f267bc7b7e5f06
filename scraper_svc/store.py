"""All state-Redis access of the scraper: the runs consumer group, run records, run limits.

Run keys, streams and scripts belong to `campaign_common.runs.log` (used here, never written
directly); lock keys belong to `campaign_common.redlock.scripts`, the cluster slots to
`scraper_svc.semaphore`. This module owns the names the scraper adds:

    campaign:<campaign_id>            Redlock resource of a campaign (on the lock masters)
    {scraper}:window:<campaign_id>    sorted set: run id -> start time ms, runs of the campaign
                                      that started within its rate window (TTL = the window)
    {scraper}:buffer:<campaign_id>    string: id of the one run waiting for the campaign lock
                                      (BUFFER_ONE), TTL refreshed while it waits

Every write for a run carries a `campaign_common.runs.log.Writer`: this worker must still own
the run's runs entry, and a write under a campaign lock carries the lock's fencing token,
refused atomically once a newer holder has written; a refused write raises a `WriteRefused`
(`EntryLost`, `Fenced`, `AttemptClosed`) and leaves nothing behind. Acks are checked the same
way (`ACK_OWNED`): a worker never acks an entry another worker took over. Domain types go
in, protobuf events come out only here. Failed attempts go to the retry delay queue
(`campaign_common.runs.retryqueue`) or the dead-letter stream (`campaign_common.runs.deadletters`),
each acking the attempt's runs entry in the same script.

Pending entries: a worker keeps the entries it is processing "fresh" (`touch` resets their
idle time every few seconds without counting a delivery), so only entries of a worker that
stopped touching them (dead, frozen, cut off) grow idle past the reclaim threshold, where
another worker takes them over (`claim_stale`, XAUTOCLAIM). `hand_back` makes a stopping
worker's entries idle at once, so others take them over without waiting.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from campaign_common.runs.deadletters import DeadLetters
from campaign_common.runs.keys import RUN_RETENTION_MS, SCRAPER_GROUP, Partitions
from campaign_common.runs.log import RunLog
from campaign_common.runs.opscript import OP_TTL_MS
from campaign_common.runs.record import RunState
from campaign_common.runs.retryqueue import RetryQueue
from campaign_common.runs.writer import AttemptClosed, Writer
from campaign_common.timeutil import ms_to_timestamp, now_ms
from campaigns.v1 import events_pb2, run_pb2
from scraper_svc.model import PageResult, RunLookup, RunRequest
from scraper_svc.store_scripts import (
    ACK_OWNED,
    ADMIT_TO_WINDOW,
    CLAIM_BUFFER,
    LOOK_UP,
    RELEASE_BUFFER,
    SET_IDLE,
)

log = logging.getLogger(__name__)

# (entry id, fields (None when deleted from the stream), times delivered)
StreamEntry = tuple[str, dict[bytes, bytes] | None, int]
_FINISHED = frozenset(
    {RunState.SUCCEEDED, RunState.FAILED, RunState.SKIPPED, RunState.DEAD_LETTERED}
)


def campaign_lock_resource(campaign_id: str) -> str:
    """The Redlock resource that serialises every run of one campaign, whatever schedule."""
    return f"campaign:{campaign_id}"


def window_key(campaign_id: str) -> str:
    return f"{{scraper}}:window:{campaign_id}"


def buffer_key(campaign_id: str) -> str:
    return f"{{scraper}}:buffer:{campaign_id}"


class ScraperStore:
    """Implements `scraper_svc.runner.RunStore` plus the consumer-group reads.

    Every write for a run is checked in its script (`campaign_common.runs.log.Writer`): this
    worker (``consumer``) must still own the run's entry, and ``fence`` (the campaign lock's
    fencing token, 0: not under a lock) must not be stale; otherwise a
    `campaign_common.runs.log.WriteRefused` is raised and nothing is written.
    """

    def __init__(
        self,
        redis: Redis,
        partitions: Partitions,
        *,
        consumer: str,
        results_cap: int,
        run_ttl_ms: int = RUN_RETENTION_MS,
        op_ttl_ms: int = OP_TTL_MS,
    ) -> None:
        self._redis = redis
        self.partitions = partitions
        self.consumer = consumer
        ttls = {"run_ttl_ms": run_ttl_ms, "op_ttl_ms": op_ttl_ms}
        self._runs = RunLog(redis, partitions, results_cap=results_cap, **ttls)
        self._admit = redis.register_script(ADMIT_TO_WINDOW)
        self._claim_buffer = redis.register_script(CLAIM_BUFFER)
        self._release_buffer = redis.register_script(RELEASE_BUFFER)
        self._set_idle = redis.register_script(SET_IDLE)
        self._ack_owned = redis.register_script(ACK_OWNED)
        self._look_up = redis.register_script(LOOK_UP)
        self._retries = RetryQueue(redis, partitions, **ttls)
        self._dead = DeadLetters(redis, partitions, **ttls)

    @property
    def redis(self) -> Redis:
        return self._redis

    def _stream(self, partition: int) -> str:
        return self.partitions[partition].runs_stream

    async def ensure_group(self) -> None:
        """Create the consumer group (and the stream) of every partition if missing; from the
        first entry on."""
        for partition in self.partitions:
            try:
                await self._redis.xgroup_create(
                    partition.runs_stream, SCRAPER_GROUP, id="0", mkstream=True
                )
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def read(
        self, consumer: str, partition: int, *, after: str, count: int, block_ms: int | None
    ) -> list[StreamEntry]:
        """XREADGROUP: ``after=">"`` for new entries, a stream id for this consumer's pending
        ones (their fields are None when the entry was deleted from the stream meanwhile)."""
        try:
            reply: Any = await self._redis.xreadgroup(
                SCRAPER_GROUP,
                consumer,
                {self._stream(partition): after},
                count=count,
                block=block_ms,
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            log.warning("consumer group %s is gone; creating it again", SCRAPER_GROUP)
            await self.ensure_group()
            return []
        entries = [
            (entry_id.decode(), fields or None)
            for _, entries in reply or []
            for entry_id, fields in entries
        ]
        if after == ">":
            return [(entry_id, fields, 1) for entry_id, fields in entries]
        return await self._with_deliveries(consumer, partition, entries)

    async def claim_stale(
        self, consumer: str, partition: int, *, min_idle_ms: int, cursor: str, count: int
    ) -> tuple[str, list[StreamEntry]]:
        """XAUTOCLAIM entries idle longer than ``min_idle_ms`` from ``cursor`` on; returns the
        cursor of the next call ("0-0": the pending list was scanned to its end) and the
        entries, now this consumer's."""
        stream = self._stream(partition)
        reply: Any = await self._redis.xautoclaim(
            stream, SCRAPER_GROUP, consumer, min_idle_ms, start_id=cursor, count=count
        )
        claimed = [(_text(entry_id), fields or None) for entry_id, fields in reply[1]]
        return _text(reply[0]), await self._with_deliveries(consumer, partition, claimed)

    async def _with_deliveries(
        self, consumer: str, partition: int, entries: list[tuple[str, dict[bytes, bytes] | None]]
    ) -> list[StreamEntry]:
        """The delivery count of each entry, read per id: a range read could be cut short by
        other entries of this consumer that lie inside the range."""
        if not entries:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for entry_id, _ in entries:
                pipe.xpending_range(
                    self._stream(partition), SCRAPER_GROUP, min=entry_id, max=entry_id, count=1
                )
            replies: list[Any] = await pipe.execute()
        counts = {
            _text(row["message_id"]): int(row["times_delivered"])
            for rows in replies
            for row in rows
            if _text(row["consumer"]) == consumer
        }
        return [(entry_id, fields, counts.get(entry_id, 1)) for entry_id, fields in entries]

    async def touch(self, consumer: str, partition: int, entry_ids: Sequence[str]) -> int:
        """Reset the idle time of entries this consumer is still processing."""
        return await self._set_entries_idle(consumer, partition, entry_ids, 0)

    async def hand_back(self, consumer: str, idle_ms: int, limit: int = 10_000) -> int:
        """Make every entry pending for this consumer (in every partition) look ``idle_ms``
        idle, so another worker claims it at its next reclaim; returns how many there were."""
        handed = 0
        for partition in range(len(self.partitions)):
            ids = await self.pending_ids(consumer, partition, start="-", count=limit)
            handed += await self._set_entries_idle(consumer, partition, ids, idle_ms)
        return handed

    async def _set_entries_idle(
        self, consumer: str, partition: int, entry_ids: Sequence[str], idle_ms: int
    ) -> int:
        if not entry_ids:
            return 0
        args: list[str | int] = [SCRAPER_GROUP, consumer, idle_ms, *entry_ids]
        return int(await self._set_idle(keys=[self._stream(partition)], args=args))

    async def move_due_retries(self, limit: int) -> int:
        """Move retries that are due from the delay queues to the runs streams (any worker);
        up to ``limit`` per partition."""
        moved = 0
        for partition in self.partitions:
            moved += await self._retries.move_due(partition, limit)
        return moved

    def _writer(self, run: RunRequest, fence: int = 0) -> Writer:
        return Writer(run.campaign_id, fence, self.consumer, run.entry_id)

    async def schedule_retry(
        self, run: RunRequest, reason: str, due_ms: int, *, fence: int = 0
    ) -> None:
        """The attempt failed and another is allowed: RETRY_SCHEDULED until ``due_ms``, the
        next attempt in the delay queue, the entry acked, all at once (or `WriteRefused`)."""
        await self._retries.schedule(
            _requested(run), reason, due_ms, writer=self._writer(run, fence)
        )

    async def dead_letter(self, run: RunRequest, error: str, *, fence: int = 0) -> str:
        """Park the run in the dead-letter stream (DEAD_LETTERED) and ack its entry."""
        return await self._dead.add(
            _requested(run), error, run.deliveries, writer=self._writer(run, fence)
        )

    async def fence_floor(self, campaign_id: str) -> int:
        """The highest fencing token that wrote for the campaign: the next lock's fence must
        be above it, even if the lock masters lost their counters."""
        fence_key = self.partitions.of(campaign_id).fence_key(campaign_id)
        return int(await self._redis.get(fence_key) or 0)

    async def is_running(self, run: RunRequest) -> bool:
        """Whether the run's projection shows this very attempt RUNNING (started somewhere)."""
        record = await self._runs.get_run(run.run_id, run.campaign_id)
        return (
            record is not None
            and record.attempt == run.attempt
            and (record.state is RunState.RUNNING)
        )

    async def last_error(self, run: RunRequest) -> str:
        record = await self._runs.get_run(run.run_id, run.campaign_id)
        return record.error if record is not None else ""

    async def ack(self, entry_id: str, partition: int) -> bool:
        """Ack an entry this worker owns; False (nothing done) when another worker owns it."""
        args = [SCRAPER_GROUP, self.consumer, entry_id]
        return int(await self._ack_owned(keys=[self._stream(partition)], args=args)) >= 0

    async def pending_ids(
        self, consumer: str, partition: int, *, start: str, count: int
    ) -> list[str]:
        """Ids of this consumer's pending entries from ``start`` on (an id, ``(id`` to
        exclude it, or ``-``), oldest first, at most ``count``."""
        rows: Any = await self._redis.xpending_range(
            self._stream(partition),
            SCRAPER_GROUP,
            min=start,
            max="+",
            count=count,
            consumername=consumer,
        )
        return [_text(row["message_id"]) for row in rows]

    async def admit_to_window(self, run: RunRequest, max_runs: int, window_s: int) -> bool:
        """Count the run against its campaign's window; False if the window is full."""
        args: list[str | int] = [run.run_id, max_runs, window_s * 1000]
        return bool(await self._admit(keys=[window_key(run.campaign_id)], args=args))

    async def claim_buffer(self, run: RunRequest, ttl_ms: int) -> bool:
        """Become (or stay) the campaign's one waiting run; False if another run is."""
        args: list[str | int] = [run.run_id, ttl_ms]
        return bool(await self._claim_buffer(keys=[buffer_key(run.campaign_id)], args=args))

    async def release_buffer(self, run: RunRequest) -> None:
        await self._release_buffer(keys=[buffer_key(run.campaign_id)], args=[run.run_id])

    async def buffered_run(self, campaign_id: str) -> str | None:
        """Id of the run waiting for the campaign lock, if any."""
        value: bytes | str | None = await self._redis.get(buffer_key(campaign_id))
        return _text(value) if value is not None else None

    async def is_finished(self, run: RunRequest) -> bool:
        record = await self._runs.get_run(run.run_id, run.campaign_id)
        return record is not None and record.attempt == run.attempt and record.state in _FINISHED

    async def look_up(self, run: RunRequest) -> RunLookup:
        """`is_finished` and the campaign's `fence_floor`, in one script call."""
        partition = self.partitions.of(run.campaign_id)
        keys = [partition.run_key(run.run_id), partition.fence_key(run.campaign_id)]
        attempt, state, floor = await self._look_up(keys=keys)
        finished = (
            attempt is not None
            and int(attempt) == run.attempt
            and state is not None
            and RunState(_text(state)) in _FINISHED
        )
        return RunLookup(finished, int(floor or 0))

    async def record_started(self, run: RunRequest, worker: str, *, fence: int = 0) -> None:
        at_ms = now_ms()
        event = events_pb2.RunStarted(
            run_id=run.run_id, attempt=run.attempt, worker=worker, started_at=ms_to_timestamp(at_ms)
        )
        await self._runs.append_event(
            event,
            state=RunState.RUNNING,
            changes={"started_at_ms": at_ms, "error": "", "next_attempt_at_ms": 0},
            writer=self._writer(run, fence),
        )

    async def record_results(
        self, run: RunRequest, pages: Sequence[PageResult], *, fence: int = 0
    ) -> None:
        results = [_result(run, page) for page in pages]
        await self._runs.add_results(
            run.campaign_id, results, writer=self._writer(run, fence), attempt=run.attempt
        )

    async def record_succeeded(
        self, run: RunRequest, pages: Sequence[PageResult], *, fence: int = 0
    ) -> None:
        """The attempt's results, its RunSucceeded and the ack of its entry, in one script."""
        at_ms = now_ms()
        event = events_pb2.RunSucceeded(
            run_id=run.run_id,
            attempt=run.attempt,
            pages=len(pages),
            finished_at=ms_to_timestamp(at_ms),
        )
        changes: dict[str, str | int] = {"finished_at_ms": at_ms, "error": ""}
        await self._runs.append_event(
            event,
            state=RunState.SUCCEEDED,
            changes=changes,
            writer=self._writer(run, fence),
            results=[_result(run, page) for page in pages],
            ack=True,
        )

    async def record_failed(self, run: RunRequest, error: str, *, fence: int = 0) -> None:
        at_ms = now_ms()
        event = events_pb2.RunFailed(
            run_id=run.run_id, attempt=run.attempt, error=error, finished_at=ms_to_timestamp(at_ms)
        )
        changes: dict[str, str | int] = {"finished_at_ms": at_ms, "error": error}
        writer = self._writer(run, fence)
        await self._runs.append_event(
            event, state=RunState.FAILED, changes=changes, writer=writer, ack=True
        )

    async def record_skipped(self, run: RunRequest, reason: str, *, fence: int = 0) -> None:
        at_ms = now_ms()
        event = events_pb2.RunSkipped(
            run_id=run.run_id,
            attempt=run.attempt,
            reason=reason,
            finished_at=ms_to_timestamp(at_ms),
        )
        changes: dict[str, str | int] = {"finished_at_ms": at_ms, "error": reason}
        writer = self._writer(run, fence)
        await self._runs.append_event(
            event, state=RunState.SKIPPED, changes=changes, writer=writer, ack=True
        )

    async def record_retry_scheduled(self, run: RunRequest, reason: str) -> None:
        """The run could not start for a reason outside it; it stays pending and runs again.

        Never a RunFailed: the scheduler counts those towards pause-on-failure. Only a note:
        when the attempt is past it (it started somewhere already), nothing is written.
        """
        event = events_pb2.RunRetryScheduled(run_id=run.run_id, attempt=run.attempt, reason=reason)
        changes: dict[str, str | int] = {"error": reason, "next_attempt_at_ms": 0}
        try:
            await self._runs.append_event(
                event,
                state=RunState.RETRY_SCHEDULED,
                changes=changes,
                writer=self._writer(run),
            )
        except AttemptClosed:
            log.info("run %s: the deferral note was not needed (%s)", run.run_id, reason)


def _requested(run: RunRequest) -> events_pb2.RunRequested:
    """The run's request as it was received (the consumer keeps its body in ``payload``)."""
    return events_pb2.RunRequested.FromString(run.payload)


def _result(run: RunRequest, page: PageResult) -> run_pb2.ScrapeResult:
    return run_pb2.ScrapeResult(
        run_id=run.run_id,
        campaign_id=run.campaign_id,
        attempt=run.attempt,
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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
