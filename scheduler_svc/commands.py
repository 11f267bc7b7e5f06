"""Schedule commands: validate, append an event with the expected version, read your write.

A command never changes state directly: it appends to the log and waits until this replica's
registry has applied its entry, so the answer reflects exactly what every replica will see.

Order of a change (why no fire after the answer can be emitted for the old version):
append the event (version v+1) -> this replica's log follower raises the schedule's emission
guard to v+1, then applies the entry -> answer. From then on the emission script refuses every
fire computed from version v, whichever replica holds it (see `scheduler_svc.firing`).

Group commit: commands in flight together are appended by one script call
(`ScheduleStore.append_many`), each change still checked on its own (its expected version, a
create's request id), and each answered only once appended and applied, as if alone. The call
lingers while the event loop is busy with requests that will join it (`batcher.Linger`).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import replace

from google.protobuf.message import Message

from campaign_common.envelope import decode_body
from campaign_common.page_tokens import decode_page_token, encode_page_token
from campaign_common.timeutil import now_ms
from scheduler_svc.batcher import Batcher, Linger
from scheduler_svc.codec import schedule_event, schedule_from_event
from scheduler_svc.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    Unavailable,
    VersionConflict,
)
from scheduler_svc.model import NewSchedule, Schedule, ScheduleState
from scheduler_svc.registry import Registry, StreamId
from scheduler_svc.store import Appended, Change, ScheduleStore
from scheduler_svc.validation import check_new_schedule

_CONFLICT_RETRIES = 3
_SCHEDULE_ID = re.compile(r"[0-9a-f]{20}")


def new_schedule_id(at_ms: int) -> str:
    """Time-ordered: sorting ids sorts schedules by creation."""
    return f"{at_ms:012x}{secrets.token_hex(4)}"


def _is_schedule_id(position: str) -> bool:
    """A page token's position is a schedule id as `new_schedule_id` makes them."""
    return _SCHEDULE_ID.fullmatch(position) is not None


def _stale(current: Schedule, expected: int) -> VersionConflict:
    return VersionConflict(
        f"schedule {current.schedule_id} is at version {current.version}, not {expected}: "
        "read it again, then retry with the version you read"
    )


def _create_op_id(request_id: str) -> str:
    """The append's operation id for an idempotent create ('' = a fresh one per call)."""
    if not request_id:
        return ""
    return "create-" + hashlib.sha256(request_id.encode()).hexdigest()[:40]


def _same_request(first: Schedule, command: NewSchedule) -> bool:
    same_campaign = not command.campaign_id or command.campaign_id == first.campaign_id
    return same_campaign and (
        first.name,
        first.timing,
        first.scrape,
        first.limits,
        first.retry,
    ) == (command.name.strip(), command.timing, command.scrape, command.limits, command.retry)


def new_campaign_id() -> str:
    return f"campaign-{secrets.token_hex(5)}"


class Commands:
    def __init__(
        self,
        store: ScheduleStore,
        registry: Registry,
        *,
        apply_timeout_s: float,
        past_grace_ms: int,
        append_linger_s: float = 0.010,
        append_batch: int = 16,
    ) -> None:
        self._store = store
        self._registry = registry
        # Group commit: the API's concurrent commands leave in a few script calls (one at a
        # time, each gathering what came while the last one ran), and their entries come back
        # to the log follower together. Completions (a burst's) have calls of their own, so a
        # burst never holds an API command up.
        self._in_flight = 0  # commands between their append and their answer
        self._appends: Batcher[Change, Appended] = Batcher(
            store.append_many,
            max_batch=append_batch,
            max_calls=1,
            name="append-call",
            linger=Linger(append_linger_s, append_batch, others=lambda: self._in_flight > 1),
        )
        self._completions: Batcher[Change, Appended] = Batcher(
            store.append_many, name="completion-call"
        )
        self._apply_timeout_s = apply_timeout_s
        self._past_grace_ms = past_grace_ms

    def get(self, schedule_id: str) -> Schedule:
        schedule = self._registry.get(schedule_id)
        if schedule is None:
            raise NotFound(f"schedule {schedule_id!r} not found; list schedules to see the ids")
        return schedule

    def find(self, schedule_id: str) -> Schedule | None:
        return self._registry.get(schedule_id)

    def page(self, page_size: int, page_token: str) -> tuple[list[Schedule], str]:
        after = decode_page_token(page_token, _is_schedule_id) if page_token else ""
        page, more = self._registry.page_after(after, page_size)
        return page, encode_page_token(page[-1].schedule_id) if more and page else ""

    def preview(self, command: NewSchedule) -> Schedule:
        """AIP-163 validate_only: the schedule ``create`` would make, without appending it
        (no schedule id, version 0, the campaign id as given)."""
        at = now_ms()
        schedule = self._validated(command, at, schedule_id="", campaign_id=command.campaign_id)
        return replace(schedule, version=0)

    def _validated(
        self, command: NewSchedule, at: int, *, schedule_id: str, campaign_id: str
    ) -> Schedule:
        violations = check_new_schedule(command, at, self._past_grace_ms)
        if violations:
            raise InvalidArgument(violations)
        assert command.timing is not None  # checked by validation
        return Schedule(
            schedule_id=schedule_id,
            campaign_id=campaign_id,
            name=command.name.strip(),
            timing=command.timing,
            scrape=command.scrape,
            limits=command.limits,
            retry=command.retry,
            version=1,
            state=ScheduleState.ACTIVE,
            created_at_ms=at,
            updated_at_ms=at,
        )

    async def create(self, command: NewSchedule) -> Schedule:
        at = now_ms()
        schedule = self._validated(
            command,
            at,
            schedule_id=new_schedule_id(at),
            campaign_id=command.campaign_id or new_campaign_id(),
        )
        event = schedule_event("created", schedule)
        op_id = _create_op_id(command.request_id)
        appended = await self._commit(Change(schedule.schedule_id, 0, event, op_id))
        if appended.entry is None:  # a schedule id made twice: not this caller's doing
            raise Unavailable("the new schedule's id was taken; retry the create")
        if appended.repeat:
            return await self._first_created(appended.entry, command)
        return self.get(schedule.schedule_id)

    async def _first_created(self, entry: StreamId, command: NewSchedule) -> Schedule:
        """The schedule the first create with this request id made (this call's, or a retry's
        answer); a different request under the same id is ALREADY_EXISTS."""
        envelope = await self._store.read_entry(entry)
        body = decode_body(envelope) if envelope is not None else None
        decoded = schedule_from_event(body) if body is not None else None
        if decoded is None:
            raise Unavailable("the create was recorded but cannot be read back yet; retry it")
        first = decoded[0]
        if not _same_request(first, command):
            raise AlreadyExists(
                f"request_id {command.request_id[:64]!r} was used for a different create "
                f"(schedule {first.schedule_id}); use a new request_id for a new schedule"
            )
        return self.get(first.schedule_id)

    async def update(self, schedule_id: str, command: NewSchedule, expected: int = 0) -> Schedule:
        """Replace name, timing, scrape, limits and retry policy; id, campaign, state stay."""
        at = now_ms()
        current = self.get(schedule_id)
        command = replace(command, campaign_id=current.campaign_id)
        violations = check_new_schedule(command, at, self._past_grace_ms)
        if violations:
            raise InvalidArgument(violations)
        assert command.timing is not None  # checked by validation

        def change(current: Schedule) -> Message:
            updated = current.evolve(
                now_ms(),
                name=command.name.strip(),
                timing=command.timing,
                scrape=command.scrape,
                limits=command.limits,
                retry=command.retry,
            )
            return schedule_event("updated", updated)

        return await self._mutate(schedule_id, change, expected)

    async def pause(self, schedule_id: str, note: str, expected: int = 0) -> Schedule:
        """Pause with ``note``; an empty note keeps the note of a paused schedule."""

        def change(current: Schedule) -> Message | None:
            if current.state is ScheduleState.PAUSED and note in ("", current.paused_note):
                return None
            paused = current.evolve(now_ms(), state=ScheduleState.PAUSED, paused_note=note)
            return schedule_event("paused", paused, note)

        return await self._mutate(schedule_id, change, expected)

    async def resume(self, schedule_id: str, expected: int = 0) -> Schedule:
        def change(current: Schedule) -> Message | None:
            if current.state is not ScheduleState.PAUSED:
                return None
            resumed = current.evolve(now_ms(), state=ScheduleState.ACTIVE, paused_note="")
            return schedule_event("resumed", resumed)

        return await self._mutate(schedule_id, change, expected)

    async def complete(self, schedule: Schedule) -> None:
        """Mark a schedule with no fires left COMPLETED (a lost race with a replica is fine).

        Completions due together (a burst of one-shot schedules) are appended many per call.
        """
        done = schedule.evolve(now_ms(), state=ScheduleState.COMPLETED)
        change = Change(schedule.schedule_id, schedule.version, schedule_event("updated", done))
        appended = await self._completions.submit(change)
        if appended.entry is not None:
            await self._wait(appended.entry)

    async def close(self) -> None:
        """Cancel appends and completions in flight (shutdown)."""
        await self._appends.close()
        await self._completions.close()

    async def delete(self, schedule_id: str, expected: int = 0) -> None:
        def change(current: Schedule) -> Message:
            return schedule_event("deleted", current.evolve(now_ms()))

        await self._mutate(schedule_id, change, expected)

    async def _mutate(
        self,
        schedule_id: str,
        change: Callable[[Schedule], Message | None],
        expected: int = 0,
    ) -> Schedule:
        """Apply ``change`` to the current version; with ``expected`` only to that version."""
        for _ in range(_CONFLICT_RETRIES):
            current = self.get(schedule_id)
            if expected and current.version != expected:
                raise _stale(current, expected)
            event = change(current)
            if event is None:
                return current
            appended = await self._commit(Change(schedule_id, current.version, event))
            if appended.entry is None:
                await self._catch_up()  # another replica changed it: re-read and re-decide
                continue
            return self._registry.get(schedule_id) or current
        raise VersionConflict(f"schedule {schedule_id} keeps changing concurrently; retry later")

    async def _commit(self, change: Change) -> Appended:
        """Append ``change`` with the commands in flight (group commit); once appended, wait
        until this replica applied it."""
        self._in_flight += 1
        try:
            appended = await self._appends.submit(change)
            if appended.entry is not None:
                await self._wait(appended.entry)
            return appended
        finally:
            self._in_flight -= 1

    async def _catch_up(self) -> None:
        latest = await self._store.latest_id()
        if latest is not None:
            await self._wait(latest)

    async def _wait(self, entry: StreamId) -> None:
        try:
            await self._registry.wait_applied(entry, self._apply_timeout_s)
        except TimeoutError as exc:
            raise Unavailable(
                "the change was recorded but this replica has not applied it yet; read it again"
            ) from exc
