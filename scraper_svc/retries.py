"""Runs this worker left pending on purpose, and when to run each of them again.

A run that cannot go on for a reason outside it (no lock quorum, no cluster slot, the state
Redis failing) keeps its runs-stream entry pending, unacked, in this consumer's pending list.
The book remembers the request and a due time with exponential backoff and jitter
(``base_s`` doubling up to ``max_s``, times a random factor in [0.5, 1.0]); the consumer's
sweep (`scraper_svc.consumer`) runs due entries again if they are still this consumer's.
Failures are counted per entry until it runs to completion. The book lives in memory: after a
restart the consumer reads its whole pending list once anyway.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from scraper_svc.model import RunRequest


@dataclass
class _Entry:
    request: RunRequest
    failures: int = 0
    due: float | None = None  # None while the entry is running


class RetryBook:
    def __init__(self, *, base_s: float, max_s: float) -> None:
        self._base_s = base_s
        self._max_s = max_s
        self._entries: dict[str, _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def schedule(self, request: RunRequest, now: float) -> float:
        """Note one more failure of the entry; returns the delay until it is due again.

        ``request`` replaces the one kept (its delivery count may have grown)."""
        entry = self._entries.setdefault(request.entry_id, _Entry(request))
        entry.request = request
        entry.failures += 1
        delay: float = min(self._max_s, self._base_s * 2.0 ** (entry.failures - 1))
        delay *= random.uniform(0.5, 1.0)
        entry.due = now + delay
        return delay

    def take_due(self, now: float, limit: int) -> list[RunRequest]:
        """Up to ``limit`` due entries, oldest stream id first; they count as running now."""
        due = sorted(
            (
                entry
                for entry in self._entries.values()
                if entry.due is not None and entry.due <= now
            ),
            key=lambda entry: stream_order(entry.request.entry_id),
        )[:limit]
        for entry in due:
            entry.due = None
        return [entry.request for entry in due]

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._entries

    def entry_ids(self) -> set[str]:
        return set(self._entries)

    def waiting(self) -> int:
        """Entries waiting for their due time (not running)."""
        return sum(1 for entry in self._entries.values() if entry.due is not None)

    def next_due(self) -> float | None:
        dues = [entry.due for entry in self._entries.values() if entry.due is not None]
        return min(dues, default=None)

    def done(self, entry_id: str) -> None:
        """The entry ran to completion (acked), or is no longer this consumer's."""
        self._entries.pop(entry_id, None)


def stream_order(entry_id: str) -> tuple[int, int]:
    """Sort key of a stream id (``<ms>-<seq>``): ids do not sort as strings."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
