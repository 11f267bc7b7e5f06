"""A batcher: requests made at about the same time leave in a few calls, not one each.

Used for the writes a burst makes by the thousand: fires' emissions (`RunLog.emit_all`) and
one-shot completions (`ScheduleStore.append_many`), and for the group commit of the API's
schedule commands (`scheduler_svc.commands`). Each caller hands its item in (`submit`)
and waits for its own answer. Up to ``max_calls`` calls are in flight; a call takes up to
``max_batch`` waiting items. So 10,000 fires due at one instant are a few dozen round trips on
a handful of connections, and a lone item still leaves at once (a call starts as soon as one
is free). A failed call fails every item in it; each caller then decides (retries, logs).

Group commit (`Linger`): when the items come from an event loop that is itself the bottleneck
(an API create costs far more CPU here than its round trip takes), a free call finds one item
waiting, so batches stay at one. With a linger, a call first waits, in slices, while the
loop's thread stays busy (working on requests that will bring more items) and others are in
flight; it goes as soon as a slice finds the loop mostly idle (no one else is coming), the
batch holds ``Linger.batch`` items, or ``Linger.max_s`` has passed. So a lone caller never
waits, a few callers wait about one slice, and a loaded server sends a batch per call.

Timeline of one item: `submit` queues it and starts a call task if fewer than ``max_calls``
run -> a call task takes the oldest waiting items (those whose caller was cancelled meanwhile
are dropped) -> one call -> each caller gets its answer or the error. A call task leaves only
once the queue is empty, and counts as gone synchronously at that moment, so no item waits
without a call to carry it. `close` cancels the call tasks and every waiting caller.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item")
Answer = TypeVar("Answer")


@dataclass(frozen=True)
class Linger:
    """How a call waits for more items (group commit; see the module doc)."""

    max_s: float  # the longest a call waits
    batch: int  # a call stops waiting once this many items wait
    others: Callable[[], bool]  # whether anyone else may bring items (e.g. others in flight)
    slice_s: float = 0.001  # the loop is judged busy or idle per slice
    busy_share: float = 0.5  # busy: its thread was on CPU for at least this share of a slice


class Batcher(Generic[Item, Answer]):
    def __init__(
        self,
        send: Callable[[list[Item]], Awaitable[list[Answer]]],
        *,
        max_batch: int = 256,
        max_calls: int = 4,
        name: str = "batch-call",
        linger: Linger | None = None,
    ) -> None:
        self._send = send
        self._max_batch = max_batch
        self._max_calls = max_calls
        self._name = name
        self._linger = linger
        self._waiting: deque[tuple[Item, asyncio.Future[Answer]]] = deque()
        self._calls: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> Answer:
        """``item``'s answer, sent with others waiting now (the call's error if it failed)."""
        answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, answer))
        if len(self._calls) < self._max_calls:
            task = asyncio.create_task(self._drain(), name=self._name)
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)
        return await answer

    async def _drain(self) -> None:
        try:
            await self._send_all()
        finally:
            # Synchronously after the queue was found empty: a `submit` from now on sees this
            # call gone and starts another.
            task = asyncio.current_task()
            if task is not None:
                self._calls.discard(task)

    async def _send_all(self) -> None:
        while True:
            await self._wait_for_more()
            batch = self._take()
            if not batch:
                return
            try:
                answers = await self._send([item for item, _ in batch])
            except asyncio.CancelledError:
                for _, answer in batch:
                    answer.cancel()
                raise
            except Exception as exc:  # every caller in the call gets the error
                for _, answer in batch:
                    if not answer.done():
                        answer.set_exception(exc)
                continue
            for (_, answer), value in zip(batch, answers, strict=True):
                if not answer.done():
                    answer.set_result(value)

    async def _wait_for_more(self) -> None:
        """Linger before a call while the loop is busy and the batch is small (`Linger`)."""
        linger = self._linger
        if linger is None or not linger.others():
            return
        started = time.perf_counter()
        while len(self._waiting) < min(linger.batch, self._max_batch):
            cpu_s, wall_s = time.thread_time(), time.perf_counter()
            await asyncio.sleep(linger.slice_s)
            used_s, now = time.thread_time() - cpu_s, time.perf_counter()
            if used_s < linger.busy_share * (now - wall_s) or now - started >= linger.max_s:
                return

    def _take(self) -> list[tuple[Item, asyncio.Future[Answer]]]:
        batch: list[tuple[Item, asyncio.Future[Answer]]] = []
        while self._waiting and len(batch) < self._max_batch:
            waiting = self._waiting.popleft()
            if not waiting[1].done():  # a cancelled caller needs nothing sent
                batch.append(waiting)
        return batch

    async def close(self) -> None:
        """Cancel the calls in flight (shutdown); waiting callers are cancelled too."""
        for task in list(self._calls):
            task.cancel()
        await asyncio.gather(*self._calls, return_exceptions=True)
        while self._waiting:
            self._waiting.popleft()[1].cancel()
