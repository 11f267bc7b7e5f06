"""The run projection as stored in its hash: states, ranks, the record, and its fields.

A run's hash (`campaign_common.runs.keys.Partition.run_key`) holds its current state; every
script that writes it takes its fields flattened into ARGV (`flatten`), and readers parse it
back into a `RunRecord`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any


class RunState(StrEnum):
    REQUESTED = "REQUESTED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    RETRY_SCHEDULED = "RETRY_SCHEDULED"
    DEAD_LETTERED = "DEAD_LETTERED"


class Rank(IntEnum):
    """Within one attempt a projection never moves back to a lower rank."""

    REQUESTED = 0
    RUNNING = 1
    FINISHED = 2


# RETRY_SCHEDULED ranks with REQUESTED: the retried attempt's RunStarted must apply over it.
_RANKS = {
    RunState.REQUESTED: Rank.REQUESTED,
    RunState.RETRY_SCHEDULED: Rank.REQUESTED,
    RunState.RUNNING: Rank.RUNNING,
}


def rank_of(state: RunState) -> Rank:
    """The rank an event that moves a run to ``state`` has within its attempt."""
    return _RANKS.get(state, Rank.FINISHED)


@dataclass(frozen=True)
class RunRecord:
    """The run projection as stored; times in epoch ms, 0 when not reached yet."""

    run_id: str
    schedule_id: str
    campaign_id: str
    state: RunState
    attempt: int
    scheduled_for_ms: int
    trigger: str
    started_at_ms: int = 0
    finished_at_ms: int = 0
    error: str = ""
    next_attempt_at_ms: int = 0  # RETRY_SCHEDULED after a failed attempt: when the next is due


def flatten(mapping: dict[str, Any]) -> list[Any]:
    """Field/value pairs flattened, the way a Lua script's ARGV takes them."""
    flat: list[Any] = []
    for key, value in mapping.items():
        flat += [key, value]
    return flat


def parse_record(raw: dict[bytes, bytes]) -> RunRecord:
    """A run hash as read (bytes) into its record."""
    text = {key.decode(): value.decode() for key, value in raw.items()}
    return RunRecord(
        run_id=text.get("run_id", ""),
        schedule_id=text.get("schedule_id", ""),
        campaign_id=text.get("campaign_id", ""),
        state=RunState(text.get("state", RunState.REQUESTED.value)),
        attempt=int(text.get("attempt", "1")),
        scheduled_for_ms=int(text.get("scheduled_for_ms", "0")),
        trigger=text.get("trigger", "SCHEDULED"),
        started_at_ms=int(text.get("started_at_ms", "0")),
        finished_at_ms=int(text.get("finished_at_ms", "0")),
        error=text.get("error", ""),
        next_attempt_at_ms=int(text.get("next_attempt_at_ms", "0")),
    )
