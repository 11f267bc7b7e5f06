"""Keeping the garbage collector's full passes off a burst of fires.

A burst allocates tens of thousands of short-lived objects (fire tasks, futures, messages),
and CPython runs a full (oldest-generation) pass every time enough of them outlive a young
pass. A full pass walks every object the process holds, the registry's schedules above all:
50-200 ms each with 10,000 schedules, and six of them (0.8 s) fell within a 10,000-fire
burst (docs/benchmarks.md, "A burst"). While a burst runs, the objects that existed when it
began (the long-lived state) are frozen (`gc.freeze`: out of the collector's reach, nothing
copied), and the young generation's threshold is raised, so the burst's own objects (tens of
thousands alive at once) are walked by a full pass every few million allocations, not every
70,000; young passes still run. They are thawed (`gc.unfreeze`) when the last burst held
ends, or ``max_s`` after the first one began, whichever comes first, so garbage cycles among
them are collected right after and memory stays bounded even when a burst's fires hang (an
emission retried through an outage).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterable

# The young generation's threshold during a burst (CPython's default is 700): a young pass
# then walks up to this many objects (a millisecond or so), and a full pass comes after 100
# young ones.
BURST_YOUNG_THRESHOLD = 20_000


class HeapFreeze:
    def __init__(self, max_s: float) -> None:
        self._max_s = max_s
        self._holders = 0
        self._epoch = 0  # a thaw by the cap ends every hold taken before it
        self._cap: asyncio.TimerHandle | None = None
        self._thresholds = gc.get_threshold()

    @property
    def frozen(self) -> bool:
        return self._cap is not None

    def hold_until_done(self, tasks: Iterable[asyncio.Task[None]]) -> None:
        """Freeze (if not yet) until every one of ``tasks`` is done (or the cap)."""
        pending = [task for task in tasks if not task.done()]
        if not pending:
            return
        if self._cap is None:
            gc.freeze()
            self._thresholds = young, *older = gc.get_threshold()
            gc.set_threshold(max(young, BURST_YOUNG_THRESHOLD), *older)
            self._cap = asyncio.get_running_loop().call_later(self._max_s, self._thaw)
        self._holders += 1
        epoch = self._epoch
        left = len(pending)

        def done(_: asyncio.Task[None]) -> None:
            nonlocal left
            left -= 1
            if left == 0 and epoch == self._epoch:
                self._holders -= 1
                if self._holders == 0:
                    self._thaw()

        for task in pending:
            task.add_done_callback(done)

    def _thaw(self) -> None:
        if self._cap is None:
            return
        self._cap.cancel()
        self._cap = None
        self._holders = 0
        self._epoch += 1
        gc.set_threshold(*self._thresholds)
        gc.unfreeze()

    def close(self) -> None:
        """Thaw now (shutdown)."""
        self._thaw()
