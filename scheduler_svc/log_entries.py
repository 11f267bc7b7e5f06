"""Schedule log entries decoded once: the schedule each leaves, and the guards a batch raises.

The follower applies decoded entries to the registry and the compactor folds them into the
snapshot; both raise a batch's emission guards first. Decoding happens here, once per entry
and reader, so neither decodes an entry twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from campaign_common.envelope import decode_body
from campaign_common.runs.emission import EmissionGuard
from campaigns.v1 import schedule_pb2
from scheduler_svc.codec import schedule_from_event
from scheduler_svc.model import Schedule
from scheduler_svc.registry import StreamId
from scheduler_svc.store import Entry, guard_of


@dataclass(frozen=True)
class Decoded:
    entry_id: StreamId
    schedule: Schedule | None  # None: an entry this version skips
    deleted: bool = False
    message: schedule_pb2.Schedule | None = None  # the schedule as the entry carries it


def decode(entry: Entry) -> Decoded:
    entry_id, envelope = entry
    body = decode_body(envelope) if envelope is not None else None
    decoded = schedule_from_event(body) if body is not None else None
    if decoded is None or body is None:
        return Decoded(entry_id, None)
    schedule, deleted = decoded
    return Decoded(entry_id, schedule, deleted, body.schedule)  # type: ignore[attr-defined]


def decode_all(entries: list[Entry]) -> list[Decoded]:
    return [decode(entry) for entry in entries]


def latest_guards(decoded: list[Decoded], guards: dict[str, EmissionGuard]) -> None:
    """Fold the entries' guards into ``guards``: the highest version per schedule."""
    for each in decoded:
        if each.schedule is None:
            continue
        guard = guard_of(each.schedule, each.deleted)
        current = guards.get(guard.schedule_id)
        if current is None or guard.version > current.version:
            guards[guard.schedule_id] = guard
