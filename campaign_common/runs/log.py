"""The run log: requesting runs, their lifecycle events and results, and reading them back.

The scheduler appends run requests here and reads the run projection; the scraper appends
lifecycle events and writes results. Key names are in `campaign_common.runs.keys`; emission is
`campaign_common.runs.emission`; the writer checks of worker writes are
`campaign_common.runs.writer`; the projection's record is `campaign_common.runs.record`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from campaign_common.envelope import Envelope, wrap
from campaign_common.page_tokens import decode_page_token, encode_page_token
from campaign_common.runs.emission import EMIT_RUNS, Emission, EmitCall
from campaign_common.runs.keys import RUN_RETENTION_MS, SCRAPER_GROUP, Partition, Partitions
from campaign_common.runs.log_scripts import ADD_RESULTS, APPEND_RUN_EVENT
from campaign_common.runs.opscript import OP_TTL_MS
from campaign_common.runs.record import Rank, RunRecord, RunState, flatten, parse_record, rank_of
from campaign_common.runs.writer import Writer, refusal, worker_script
from campaign_common.timeutil import ms_to_timestamp, now_ms
from campaigns.v1 import events_pb2, run_pb2

# A schedule as the run log needs it: its id and its campaign's (which gives the partition).
ScheduleRef = tuple[str, str]

# Manual run ids are unique by construction: their dedupe marker only has to outlive the
# client's re-sends of one call (seconds), by a wide margin.
_RESEND_DEDUPE_TTL_MS = 3600 * 1000


class RunLog:
    """Async access to the run keys of the state Redis (client must use bytes responses)."""

    def __init__(
        self,
        redis: Redis,
        partitions: Partitions,
        *,
        dedupe_ttl_ms: int = 24 * 3600 * 1000,
        run_ttl_ms: int = RUN_RETENTION_MS,
        op_ttl_ms: int = OP_TTL_MS,
        results_cap: int = 1000,
    ) -> None:
        self._redis = redis
        self.partitions = partitions
        self._dedupe_ttl_ms = dedupe_ttl_ms
        self._run_ttl_ms = run_ttl_ms
        self._results_cap = results_cap
        self._emit = redis.register_script(EMIT_RUNS)
        self._append = redis.register_script(worker_script(APPEND_RUN_EVENT, op_ttl_ms=op_ttl_ms))
        self._add_results = redis.register_script(ADD_RESULTS)

    async def request_run(
        self,
        request: events_pb2.RunRequested,
        *,
        dedupe: bool,
        max_total: int = 0,
        schedule_version: int = 0,
    ) -> Emission:
        """Append a RunRequested and its REQUESTED projection; what happened (true if appended).

        A run id is appended at most once: a second replica emitting the same scheduled fire,
        or redis-py re-sending this call after a lost reply, gets `Emission.DUPLICATE`.
        ``dedupe`` says the run id may come from several processes (scheduled fires: the
        marker outlives any catch-up window); without it the id is unique by construction
        (manual runs) and the marker only outlives a client's re-sends. With ``max_total`` at
        most that many runs of the schedule are ever appended this way (`Emission.CAPPED`).
        With ``schedule_version`` (every scheduled fire) the run is appended only while the
        schedule's `EmissionGuard` is at that version and active, else `Emission.STALE`; 0
        (manual runs) skips the guard. The checks and the XADD are one script, so a crash
        between them is impossible and two replicas can never both pass them.
        """
        call = self.request_call(
            request, dedupe=dedupe, max_total=max_total, schedule_version=schedule_version
        )
        return (await self.emit_all([call]))[0]

    def request_call(
        self,
        request: events_pb2.RunRequested,
        *,
        dedupe: bool,
        max_total: int = 0,
        schedule_version: int = 0,
        trace_headers: tuple[str, str] | None = None,
    ) -> EmitCall:
        """The emission of `request_run`, to send alone or in a batch (`emit_all`); its
        envelope carries ``trace_headers`` (else the current trace context)."""
        fields: dict[str, str | int] = {
            "state": RunState.REQUESTED.value,
            "attempt": request.attempt,
            "rank": int(Rank.REQUESTED),
            "trigger": run_pb2.RunTrigger.Name(request.trigger).removeprefix("RUN_TRIGGER_"),
        }
        ttl_ms = self._dedupe_ttl_ms if dedupe else _RESEND_DEDUPE_TTL_MS
        partition = self.partitions.of(request.campaign_id)
        return EmitCall(
            partition,
            partition.runs_stream,
            wrap(request, trace_headers=trace_headers),
            request,
            fields,
            dedupe_ttl_ms=ttl_ms,
            cap=max_total,
            schedule_version=schedule_version,
        )

    async def emit_all(self, calls: list[EmitCall]) -> list[Emission]:
        """Emit many runs in one script call per partition; each is emitted exactly as alone
        (same checks, same dedupe), and the answer says what happened to each, in order."""
        grouped = self.partitions.group(call.run.campaign_id for call in calls)
        if len(grouped) == 1:
            return await self._emit_in_partition(calls)
        answers: list[Emission] = [Emission.STALE] * len(calls)
        # One partition after the other: the batcher keeps several calls in flight already,
        # and concurrent script calls of one cluster client trip redis/redis-py#4287.
        for group in grouped.values():
            emissions = await self._emit_in_partition([calls[i] for i in group])
            for position, emission in zip(group, emissions, strict=True):
                answers[position] = emission
        return answers

    async def _emit_in_partition(self, calls: list[EmitCall]) -> list[Emission]:
        keys: list[str] = []
        args: list[bytes] = []
        for call in calls:
            keys += call.keys()
            args.append(call.packed(self._run_ttl_ms))
        replies = await self._emit(keys=keys, args=args)
        return [Emission.of(reply) for reply in replies]

    async def record_missed(
        self, run: events_pb2.RunRequested, reason: str, *, schedule_version: int
    ) -> Emission:
        """Record a fire that will not run as a SKIPPED run (once per run id), not as a request.

        The run id is deduplicated exactly like an emission, so a fire is either requested
        or recorded as missed, never both, whichever replica gets there first. It is guarded
        like an emission too: a replica whose copy of the schedule is stale records nothing
        (`Emission.STALE`).
        """
        at_ms = now_ms()
        skipped = events_pb2.RunSkipped(
            run_id=run.run_id,
            attempt=run.attempt,
            reason=reason,
            finished_at=ms_to_timestamp(at_ms),
        )
        fields: dict[str, str | int] = {
            "state": RunState.SKIPPED.value,
            "attempt": run.attempt,
            "rank": int(Rank.FINISHED),
            "trigger": "SCHEDULED",
            "error": reason,
            "finished_at_ms": at_ms,
        }
        partition = self.partitions.of(run.campaign_id)
        call = EmitCall(
            partition,
            partition.events_stream,
            wrap(skipped),
            run,
            fields,
            dedupe_ttl_ms=self._dedupe_ttl_ms,
            schedule_version=schedule_version,
        )
        return (await self.emit_all([call]))[0]

    def _emitted_key(self, schedule: ScheduleRef) -> str:
        return self.partitions.of(schedule[1]).emitted_key(schedule[0])

    def _schedule_index(self, schedule: ScheduleRef) -> str:
        return self.partitions.of(schedule[1]).schedule_index(schedule[0])

    async def emitted_count(self, schedule: ScheduleRef) -> int:
        """Scheduled runs emitted so far under a cap (0 for schedules without one)."""
        return int(await self._redis.get(self._emitted_key(schedule)) or 0)

    async def forget_schedules(self, schedules: list[ScheduleRef]) -> None:
        """Drop what emission keeps per schedule once the schedules are deleted (their
        counters of emitted runs); the guards stay, as tombstones with an expiry."""
        if schedules:
            async with self._redis.pipeline(transaction=False) as pipe:
                for schedule in schedules:  # one key per command: any slot
                    pipe.delete(self._emitted_key(schedule))
                await pipe.execute()

    async def emitted_counts(self, schedules: list[ScheduleRef], batch: int = 1000) -> list[int]:
        """`emitted_count` of many schedules, one pipeline per ``batch``."""
        counts: list[int] = []
        for start in range(0, len(schedules), batch):
            keys = [self._emitted_key(ref) for ref in schedules[start : start + batch]]
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.get(key)
                counts.extend(int(value or 0) for value in await pipe.execute())
        return counts

    async def last_scheduled_fire_ms(self, schedule: ScheduleRef) -> int | None:
        """Nominal time of the newest scheduled (not manual) run of a schedule, if any."""
        return (await self.last_scheduled_fires_ms([schedule]))[0]

    async def last_scheduled_fires_ms(
        self, schedules: list[ScheduleRef], batch: int = 1000
    ) -> list[int | None]:
        """`last_scheduled_fire_ms` of many schedules, one pipeline per ``batch``."""
        lasts: list[int | None] = []
        for start in range(0, len(schedules), batch):
            async with self._redis.pipeline(transaction=False) as pipe:
                for ref in schedules[start : start + batch]:
                    index = self._schedule_index(ref)
                    pipe.zrange(index, b"+", b"-", desc=True, bylex=True, offset=0, num=50)
                lasts.extend(_newest_scheduled(members) for members in await pipe.execute())
        return lasts

    async def append_event(
        self,
        event: events_pb2.RunStarted
        | events_pb2.RunSucceeded
        | events_pb2.RunFailed
        | events_pb2.RunSkipped
        | events_pb2.RunRetryScheduled,
        *,
        state: RunState,
        changes: dict[str, str | int] | None = None,
        writer: Writer,
        results: Sequence[run_pb2.ScrapeResult] = (),
        ack: bool = False,
    ) -> bytes:
        """Append a lifecycle event and apply it to the run projection; returns the entry id.

        With ``results`` (all of this run and attempt) they are stored first, once per
        attempt as `add_results` does; with ``ack`` the writer's runs entry is acked once
        the event is applied; all in the same script.
        Raises a `WriteRefused` (`EntryLost`, `Fenced`, `AttemptClosed`) and writes nothing
        when ``writer`` lost its entry or its lock, or the attempt is past this event (see
        ``ATTEMPT_CHECK``). Safe to re-send: a lost reply is answered from the operation key.
        """
        envelope: Envelope = wrap(event)
        fields: dict[str, str | int] = {"state": state.value, **(changes or {})}
        blobs = [result.SerializeToString() for result in results]
        args = [
            *writer.args(),
            event.attempt,
            int(rank_of(state)),
            self._run_ttl_ms,
            1 if ack else 0,
            self._results_cap,
            len(blobs),
            *blobs,
            len(envelope.to_fields()),
            *envelope.flat_fields(),
            *flatten(fields),
        ]
        partition = self.partitions.of(writer.campaign_id)
        keys = [
            partition.events_stream,
            partition.run_key(event.run_id),
            *writer.keys(partition),
            partition.results_key(writer.campaign_id),
            partition.written_key(event.run_id, event.attempt),
            partition.new_op_key(),
        ]
        reply: Any = await self._append(keys=keys, args=args)
        refused = refusal(reply, f"{state.value} of run {event.run_id} attempt {event.attempt}")
        if refused is not None:
            raise refused
        return cast(bytes, reply[1])

    async def backlog(self, partition: Partition) -> tuple[int, int]:
        """(pending, lag) of the scraper group on a partition's runs stream: delivered but
        unacked, and not yet delivered."""
        try:
            groups: Any = await self._redis.xinfo_groups(partition.runs_stream)
        except ResponseError:  # no stream yet
            return 0, 0
        for group in groups:
            if group.get("name") in (SCRAPER_GROUP, SCRAPER_GROUP.encode()):
                return int(group.get("pending") or 0), int(group.get("lag") or 0)
        return 0, await self._redis.xlen(partition.runs_stream)

    async def workers_seen(self, within_ms: int) -> int:
        """Consumers of the scraper group that read a runs stream within ``within_ms``
        (XINFO CONSUMERS ``idle``: since the consumer's last read or claim); a worker reads
        every partition under one consumer name, so it counts once."""
        seen: set[Any] = set()
        for partition in self.partitions:
            try:
                consumers: Any = await self._redis.xinfo_consumers(
                    partition.runs_stream, SCRAPER_GROUP
                )
            except ResponseError:  # no stream or group yet
                continue
            seen.update(c.get("name") for c in consumers if int(c.get("idle") or 0) < within_ms)
        return len(seen)

    def _candidates(self, campaign_id: str) -> tuple[Partition, ...]:
        """The partitions that may hold a run: its campaign's, or all when not known."""
        return (self.partitions.of(campaign_id),) if campaign_id else self.partitions.all

    async def get_run(
        self, run_id: str, campaign_id: str = "", *, within: Partition | None = None
    ) -> RunRecord | None:
        """The run's projection, looked up in its campaign's partition, in ``within``, or
        (neither known) in every partition."""
        candidates = (within,) if within is not None else self._candidates(campaign_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            for partition in candidates:
                pipe.hgetall(partition.run_key(run_id))
            raws = cast(list[dict[bytes, bytes]], await pipe.execute())
        return next((parse_record(raw) for raw in raws if raw), None)

    async def list_runs(
        self, *, schedule_id: str = "", campaign_id: str = "", page_size: int, page_token: str = ""
    ) -> tuple[list[RunRecord], str]:
        """Runs newest first (by nominal time), filtered by schedule or campaign, paged.

        Without the campaign every partition's index is read from the page's position and
        the pages are merged: index members are unique and ordered the same everywhere."""
        position = decode_page_token(page_token, lambda member: "|" in member) if page_token else ""
        start = b"(" + position.encode() if page_token else b"+"
        partitions = self._candidates(campaign_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            for partition in partitions:
                pipe.zrange(
                    _index(partition, schedule_id, campaign_id),
                    start,
                    b"-",
                    desc=True,
                    bylex=True,
                    offset=0,
                    num=page_size + 1,
                )
            pages = cast(list[list[bytes]], await pipe.execute())
        members = sorted(
            (
                (member, partition)
                for partition, page in zip(partitions, pages, strict=True)
                for member in page
            ),
            key=lambda pair: pair[0],
            reverse=True,
        )[: page_size + 1]
        page = members[:page_size]
        async with self._redis.pipeline(transaction=False) as pipe:
            for member, partition in page:
                pipe.hgetall(partition.run_key(member.split(b"|", 1)[1].decode()))
            raws = await pipe.execute()
        runs = [parse_record(raw) for raw in raws if raw]
        if campaign_id and schedule_id:
            runs = [run for run in runs if run.campaign_id == campaign_id]
        token = encode_page_token(page[-1][0].decode()) if len(members) > page_size else ""
        return runs, token

    async def add_results(
        self,
        campaign_id: str,
        results: list[run_pb2.ScrapeResult],
        *,
        writer: Writer,
        attempt: int = 0,
    ) -> None:
        """Store results newest first (capped); a `WriteRefused` when ``writer`` is refused.

        Results of one run attempt (all of ``results`` belong to one run) are stored once:
        a second call for the same run and attempt, a re-run after a crash, stores nothing.
        """
        if not results:
            return
        blobs = [result.SerializeToString() for result in results]
        run_id = results[0].run_id
        partition = self.partitions.of(campaign_id)
        keys = [
            partition.results_key(campaign_id),
            partition.written_key(run_id, attempt),
            partition.run_key(run_id),
            *writer.keys(partition),
        ]
        args: list[Any] = [*writer.args(), attempt, self._results_cap, self._run_ttl_ms, *blobs]
        refused = refusal(await self._add_results(keys=keys, args=args), f"results of {run_id}")
        if refused is not None:
            raise refused

    async def list_results(
        self, campaign_id: str, limit: int, start: int = 0
    ) -> list[run_pb2.ScrapeResult]:
        """Up to ``limit`` results from index ``start`` (0: the newest)."""
        key = self.partitions.of(campaign_id).results_key(campaign_id)
        raw = cast(list[bytes], await self._redis.lrange(key, start, start + limit - 1))
        return [run_pb2.ScrapeResult.FromString(item) for item in raw]


def _index(partition: Partition, schedule_id: str, campaign_id: str) -> str:
    """The run index a list reads: the schedule's, else the campaign's, else every run."""
    if schedule_id:
        return partition.schedule_index(schedule_id)
    return partition.campaign_index(campaign_id) if campaign_id else partition.index_all


def _newest_scheduled(members: list[bytes]) -> int | None:
    """The nominal time of the first scheduled (not manual) run among index members."""
    for member in members:
        ms, _, run_id = member.decode().partition("|")
        if ":manual-" not in run_id:
            return int(ms)
    return None
