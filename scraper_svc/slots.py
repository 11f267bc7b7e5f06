"""The run slots of a worker process, shared by its consumers (one per run partition).

A slot is taken by a run in flight, by an entry waiting for its retry, and by a read in
progress (as many as it may return), so entries delivered to this worker but not yet
processed never exceed ``concurrency`` whatever partition they came from. A consumer that
blocks waiting for new entries reserves one slot only (`scraper_svc.consumer`), so idle
partitions do not starve a busy one, and holds none at all while another consumer waits for
a slot. When a run ends, every consumer is woken: the free slot may serve any partition.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class SlotUser(Protocol):
    @property
    def slots_used(self) -> int: ...

    @property
    def in_flight(self) -> int: ...

    def wake(self) -> None: ...


class Slots:
    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self._users: list[SlotUser] = []
        self._waiting = 0  # consumers waiting for a free slot

    def join(self, user: SlotUser) -> None:
        self._users.append(user)

    @property
    def shared(self) -> bool:
        """Whether more than one consumer competes for the slots."""
        return len(self._users) > 1

    def free(self) -> int:
        return self.concurrency - sum(user.slots_used for user in self._users)

    def share(self, free: int) -> int:
        """How many of ``free`` slots one read may take: an even share per partition, so a
        worker's runs mix the partitions (and their campaigns) as one stream would."""
        return max(1, -(-free // len(self._users)))

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Around a consumer's wait for a free slot."""
        self._waiting += 1
        try:
            yield
        finally:
            self._waiting -= 1

    def contended(self) -> bool:
        """Whether a consumer waits for a free slot (an idle one should not block on one)."""
        return self._waiting > 0

    def running(self) -> int:
        return sum(user.in_flight for user in self._users)

    def released(self) -> None:
        """A slot came free: every consumer looks again."""
        for user in self._users:
            user.wake()
