"""The consumer-group loop of one run partition: stream entries in, one task per run, bounded
concurrency (slots shared with the worker's other partitions, `scraper_svc.slots`), retries.

This is the edge between the runs stream and the domain: it turns ``RunRequested`` envelopes
into `RunRequest`s (`scraper_svc.entries`), runs each in a CONSUMER span ``process`` that
continues the trace its producer sent (`scraper_svc.spans`), and acks and skips entries it cannot
understand (a warning, never a crash).

Timeline that keeps it correct:

    start: pending entries of this consumer (id 0, paged by the last id seen), then new ones (>)
    loop:  sweep: due retries that are still in this consumer's pending list (XPENDING) get a
           slot first ─> reclaim (every reclaim_interval_s, if slots are free): XAUTOCLAIM
           entries idle longer than reclaim_idle_ms ─> wait for a free slot ─> XREADGROUP
           COUNT <free slots> BLOCK block_ms ─> one task each (slots shared with other
           partitions: the read is non-blocking, and only when it found nothing does a
           blocking read follow, COUNT 1, so a waiting consumer holds one slot; while
           another partition's consumer waits for a slot, an empty partition's consumer
           holds none and looks again after block_ms instead)
    beside the loop, until the last run ended: every reclaim_idle_ms / 3, touch (reset the
           idle time of) the entries this consumer is running or will retry
    stop:  flag set ─> the read in progress returns (<= block_ms) and its entries still run ─>
           no further read ─> the TaskGroup waits for in-flight runs (the server cancels them
           after its grace period; each run releases its lock on the way out) ─> the server
           hands this consumer's pending entries back (`ScraperStore.hand_back`)

Reclaim: an entry's idle time only grows past reclaim_idle_ms when its consumer stopped
touching it (killed, frozen, cut off from Redis); the threshold is longer than the campaign
lock's lease, so by then a dead worker's lock has expired and the run can take it. The run
keeps its id and attempt; the entry's delivery count grows with every claim, and the runner
dead-letters an entry delivered more than max_deliveries times. A worker that was only
frozen and wakes up finds its entry claimed: its touches skip entries it no longer owns, and
its writes are fenced off by the newer lock holder.

- A slot is reserved before reading, so entries delivered to this consumer but not yet being
  processed never exceed ``concurrency``; nothing waits in a local queue where another worker
  could not see it. Entries waiting for a retry hold their slot too: during a lock or state
  Redis outage the consumer stops reading once its slots are full of waiting entries, instead
  of pulling the stream into an unbounded in-memory backlog.
- A read is never cancelled, because entries the server delivered to a cancelled read would
  sit in this consumer's pending list unprocessed; stopping waits for the read instead.
- Every run task catches its own errors: one run can never tear down the TaskGroup and with it
  the loop. A run that raised `RetryLater` (no lock quorum, no cluster slot) or failed on the
  state Redis keeps its entry pending; `scraper_svc.retries` says when it is due, with
  exponential backoff, and the sweep runs it again, after checking that the entry is still in
  this consumer's pending list (another worker may own it by then). Waiting out an outage
  never counts as a delivery (the entry is not read again, the request is kept in memory);
  running an attempt again that got under way and was cut short (a lost lease, fenced off,
  an unexpected exception) does, so the delivery limit bounds every entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine, Mapping
from dataclasses import replace
from typing import Any

from redis.exceptions import RedisError

from campaign_common.observability.telemetry import mark_error
from campaign_common.tasks import raise_if_cancelling
from scraper_svc import metrics
from scraper_svc.entries import to_request
from scraper_svc.errors import RetryLater
from scraper_svc.model import RunRequest
from scraper_svc.retries import RetryBook, stream_order
from scraper_svc.runner import RunRunner
from scraper_svc.slots import Slots
from scraper_svc.spans import process_span
from scraper_svc.store import ScraperStore, StreamEntry

log = logging.getLogger(__name__)
PENDING_START = "0"
NEW_ENTRIES = ">"
# Reads retry at least this often while the state Redis is down, so a restart is noticed soon.
READ_BACKOFF_MAX_S = 5.0


class RunConsumer:
    def __init__(
        self,
        store: ScraperStore,
        runner: RunRunner,
        *,
        consumer: str,
        concurrency: int,
        read_batch: int,
        block_ms: int,
        retry_delay_s: float = 1.0,
        retry_max_s: float = 30.0,
        reclaim_idle_ms: int = 60_000,
        reclaim_interval_s: float = 5.0,
        partition: int = 0,
        slots: Slots | None = None,
    ) -> None:
        self._store = store
        self._runner = runner
        self._consumer = consumer
        self._concurrency = concurrency
        self.partition = partition
        self._slots = slots if slots is not None else Slots(concurrency)
        self._slots.join(self)
        self._reserved = 0  # slots held by a read in progress
        self._read_batch = read_batch
        self._block_ms = block_ms
        self._retry_delay_s = retry_delay_s
        self._retry_max_s = retry_max_s
        self._read_failures = 0
        self._retries = RetryBook(base_s=retry_delay_s, max_s=retry_max_s)
        self._reclaim_idle_ms = reclaim_idle_ms
        self._reclaim_interval_s = reclaim_interval_s
        self._next_reclaim = 0.0
        self._reclaim_cursor = "0-0"
        self._running: set[asyncio.Task[None]] = set()
        self._entries: set[str] = set()  # ids of the entries being processed
        self._wake = asyncio.Event()  # set when a run finishes or stop is requested
        self._stop = asyncio.Event()
        self._runs_done = asyncio.Event()

    @property
    def in_flight(self) -> int:
        return len(self._running)

    @property
    def slots_used(self) -> int:
        return len(self._running) + self._retries.waiting() + self._reserved

    def wake(self) -> None:
        self._wake.set()

    def _reserve(self, slots: int) -> None:
        """Hold ``slots`` for a read in progress; slots given back wake the other partitions'
        consumers, which may be waiting for them."""
        released = slots < self._reserved
        self._reserved = slots
        if released:
            self._slots.released()

    def request_stop(self) -> None:
        """Stop reading; `run` returns once the runs in flight have finished."""
        self._stop.set()
        self._wake.set()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as keepers:
            keepers.create_task(self._keep_fresh(), name="touch-pending")
            try:
                await self._consume()
            finally:
                self._runs_done.set()

    async def _consume(self) -> None:
        async with asyncio.TaskGroup() as group:
            after = PENDING_START
            while after and not self._stop.is_set():  # this consumer's pending entries first
                await self._sweep(group)
                after = await self._read(group, after, block_ms=None)
            while not self._stop.is_set():
                await self._sweep(group)
                await self._reclaim(group)
                await self._read(group, NEW_ENTRIES, block_ms=self._block_ms)

    async def _keep_fresh(self) -> None:
        """Touch the entries this consumer owns until its last run ended (see the timeline)."""
        interval_s = self._reclaim_idle_ms / 3000
        while not self._runs_done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._runs_done.wait(), interval_s)
            owned = list(self._entries | self._retries.entry_ids())
            if self._runs_done.is_set() or not owned:
                continue
            try:
                await self._store.touch(self._consumer, self.partition, owned)
            except (RedisError, OSError) as exc:
                raise_if_cancelling()
                log.warning("touching %d pending entries failed (%s)", len(owned), exc)

    async def _reclaim(self, group: asyncio.TaskGroup) -> None:
        """Take over entries other consumers stopped processing (XAUTOCLAIM), a page at a time."""
        now = time.monotonic()
        free = self._slots.free()
        if now < self._next_reclaim or free <= 0:
            return
        self._reserve(free)
        try:
            cursor, entries = await self._store.claim_stale(
                self._consumer,
                self.partition,
                min_idle_ms=self._reclaim_idle_ms,
                cursor=self._reclaim_cursor,
                count=free,
            )
        except (RedisError, OSError) as exc:
            raise_if_cancelling()
            log.warning("reclaiming idle runs entries failed (%s)", exc)
            self._next_reclaim = now + self._reclaim_interval_s
            return
        finally:
            self._reserve(0)
        # A scan that reached the end waits for the next interval; a partial one goes on.
        self._reclaim_cursor = cursor
        self._next_reclaim = now + (self._reclaim_interval_s if cursor == "0-0" else 0)
        for entry_id, fields, deliveries in entries:
            if entry_id in self._entries or entry_id in self._retries:
                continue  # ours already (a touch came late): never run an entry twice here
            log.info("reclaimed runs entry %s (delivery %d)", entry_id, deliveries)
            metrics.RECLAIMED.inc()
            self._start(group, self._process(entry_id, fields, deliveries), entry_id)

    async def _read(self, group: asyncio.TaskGroup, after: str, *, block_ms: int | None) -> str:
        """One read of up to the free slots; returns the last id read ("" when none or when
        stopping; ``after`` unchanged when no slot came free before a retry was due)."""
        free = await self._wait_for_slot()
        if not free:
            return "" if self._stop.is_set() else after
        try:
            count = min(self._slots.share(free), self._read_batch)
            entries = await self._read_reserving(after, count, block_ms)
        except (RedisError, OSError) as exc:
            raise_if_cancelling()
            await self._back_off_after(exc)
            return after
        if self._read_failures:
            log.info("runs stream reachable again after %d failed reads", self._read_failures)
            self._read_failures = 0
        for entry_id, fields, deliveries in entries:
            self._start(group, self._process(entry_id, fields, deliveries), entry_id)
        self._reserve(0)
        return entries[-1][0] if entries else ""

    async def _read_reserving(
        self, after: str, count: int, block_ms: int | None
    ) -> list[StreamEntry]:
        """A read holding ``count`` slots until its entries are started (the caller resets
        the reservation). With slots shared by other partitions, a blocking read waits with
        one slot only, after a non-blocking read found nothing (see the timeline)."""
        consumer, partition, read = self._consumer, self.partition, self._store.read
        self._reserve(count)
        try:
            if block_ms is None or not self._slots.shared:
                return await read(consumer, partition, after=after, count=count, block_ms=block_ms)
            entries = await read(consumer, partition, after=after, count=count, block_ms=None)
            if entries:
                return entries
            if self._slots.contended():  # another partition waits for a slot: give it ours
                self._reserve(0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), block_ms / 1000)
                return []
            self._reserve(1)
            return await read(consumer, partition, after=after, count=1, block_ms=block_ms)
        except BaseException:
            self._reserve(0)
            raise

    async def _back_off_after(self, exc: Exception) -> None:
        """Wait before the next read: exponential backoff while the state Redis is down."""
        self._read_failures += 1
        cap_s = min(self._retry_max_s, READ_BACKOFF_MAX_S)
        delay_s = min(cap_s, self._retry_delay_s * 2 ** (min(self._read_failures, 20) - 1))
        log.warning(
            "reading the runs stream failed (%s); state Redis unreachable? retrying in %.1f s",
            exc,
            delay_s,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay_s)

    async def _sweep(self, group: asyncio.TaskGroup) -> None:
        """Run due retries again (before new entries), if they are still this consumer's."""
        free = self._slots.free() + self._retries.waiting()  # a due retry has its slot
        if free <= 0:
            return
        due = self._retries.take_due(time.monotonic(), free)
        if not due:
            return
        try:
            mine = await self._still_pending(due)
        except (RedisError, OSError) as exc:
            raise_if_cancelling()
            log.warning("reading this consumer's pending entries failed (%s)", exc)
            for request in due:
                self._retries.schedule(request, time.monotonic())
            return
        for request in due:
            if request.entry_id in mine:
                self._start(group, self._run(request), request.entry_id)
            else:
                log.info("runs entry %s is no longer this consumer's", request.entry_id)
                self._retries.done(request.entry_id)

    async def _still_pending(self, due: list[RunRequest]) -> set[str]:
        """Which of ``due`` (sorted by id) are in this consumer's pending list."""
        wanted = {request.entry_id for request in due}
        found: set[str] = set()
        start = due[0].entry_id
        last = stream_order(due[-1].entry_id)
        while True:
            page = await self._store.pending_ids(
                self._consumer,
                self.partition,
                start=start,
                count=self._concurrency + len(self._retries),
            )
            found |= wanted.intersection(page)
            if not page or found == wanted or stream_order(page[-1]) >= last:
                return found
            start = f"({page[-1]}"

    def _start(
        self, group: asyncio.TaskGroup, work: Coroutine[Any, Any, None], entry_id: str
    ) -> None:
        task = group.create_task(work, name=f"run-{entry_id}")
        self._running.add(task)
        self._entries.add(entry_id)
        metrics.IN_FLIGHT.set(self._slots.running())
        task.add_done_callback(lambda done: self._finished(done, entry_id))

    async def _wait_for_slot(self) -> int:
        """Free slots (> 0); 0 once stop was requested, or when a waiting retry came due
        (or ``block_ms`` passed) while every slot was taken: the loop sweeps then."""
        while True:
            self._wake.clear()  # cleared before the check: a wake-up after it is never lost
            if self._stop.is_set():
                return 0
            waiting = self._retries.waiting()
            free = self._slots.free()
            if free > 0:
                return free
            with self._slots.waiting():
                if not waiting:
                    await self._wake.wait()
                    continue
                due = self._retries.next_due()
                wait_s = self._block_ms / 1000
                if due is not None:
                    wait_s = min(wait_s, max(0.0, due - time.monotonic()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait_s)
                return 0

    def _finished(self, task: asyncio.Task[None], entry_id: str) -> None:
        self._running.discard(task)
        self._entries.discard(entry_id)
        metrics.IN_FLIGHT.set(self._slots.running())
        self._slots.released()

    async def _process(
        self, entry_id: str, fields: Mapping[bytes, bytes] | None, deliveries: int
    ) -> None:
        try:
            request = to_request(entry_id, fields, deliveries, self.partition)
        except Exception:  # would fail the same way on every delivery: skip it, once
            log.exception("runs entry %s is not a run request this worker can read", entry_id)
            request = None
        if request is None:
            try:
                await self._store.ack(entry_id, self.partition)
            except (RedisError, OSError) as exc:  # still pending: taken over and skipped later
                raise_if_cancelling()
                log.warning("acking skipped runs entry %s failed (%s)", entry_id, exc)
            return
        await self._run(request)

    async def _run(self, request: RunRequest) -> None:
        try:
            with process_span(request, self._consumer) as span:
                try:
                    await self._runner.run(request)
                except Exception as exc:
                    if not isinstance(exc, RetryLater):
                        mark_error(span, type(exc).__qualname__, str(exc))
                    raise
        except RetryLater as exc:
            again = _redelivered(request) if exc.redelivery else request
            delay = self._retries.schedule(again, time.monotonic())
            log.info("run %s stays pending, retried in %.1f s: %s", request.run_id, delay, exc)
        except (RedisError, OSError):
            delay = self._retries.schedule(request, time.monotonic())
            log.exception(
                "run %s: the state Redis failed; its entry stays pending (retried in %.1f s)",
                request.run_id,
                delay,
            )
        except Exception:
            delay = self._retries.schedule(_redelivered(request), time.monotonic())
            log.exception(
                "run %s failed; its entry stays pending (retried in %.1f s)", request.run_id, delay
            )
        else:
            self._retries.done(request.entry_id)


def _redelivered(request: RunRequest) -> RunRequest:
    """The request run again after its attempt was cut short: one more delivery."""
    return replace(request, deliveries=request.deliveries + 1)
