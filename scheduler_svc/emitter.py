"""The emitter: fires that are due together leave in a few script calls, not one each.

Each fire hands its emission in (`emit`) and waits for its own answer. Up to ``max_calls``
script calls are in flight; a call takes up to ``max_batch`` waiting emissions
(`RunLog.emit_all`: each run checked and deduplicated exactly as alone). So a burst of 10,000
fires is a few dozen round trips on a handful of connections, and a lone fire still leaves at
once (a call starts as soon as one is free). A failed call fails every emission in it; each
fire then retries on its own (`scheduler_svc.firing`).

Timeline of one emission: `emit` queues it and starts a call task if fewer than
``max_calls`` run -> a call task takes the oldest waiting emissions (those whose fire was
cancelled meanwhile are dropped) -> one script call -> each fire gets its answer or the
error. `close` cancels the call tasks; their waiting fires are cancelled with them.
"""

from __future__ import annotations

import asyncio
from collections import deque

from campaign_common.runs.emission import Emission, EmitCall
from campaign_common.runs.log import RunLog

_Waiting = tuple[EmitCall, "asyncio.Future[Emission]"]


class Emitter:
    def __init__(self, runs: RunLog, *, max_batch: int = 256, max_calls: int = 4) -> None:
        self._runs = runs
        self._max_batch = max_batch
        self._max_calls = max_calls
        self._waiting: deque[_Waiting] = deque()
        self._calls: set[asyncio.Task[None]] = set()

    async def emit(self, call: EmitCall) -> Emission:
        """Emit one run with others due now; what happened to it (RedisError if the call
        carrying it failed)."""
        answer: asyncio.Future[Emission] = asyncio.get_running_loop().create_future()
        self._waiting.append((call, answer))
        if len(self._calls) < self._max_calls:
            task = asyncio.create_task(self._drain(), name="emission-call")
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)
        return await answer

    async def _drain(self) -> None:
        try:
            await self._send_all()
        finally:
            # Synchronously after the queue was found empty: an `emit` from now on sees this
            # call gone and starts another, so no emission waits without a call to carry it.
            self._calls.discard(asyncio.current_task())

    async def _send_all(self) -> None:
        while batch := self._take():
            try:
                emissions = await self._runs.emit_all([call for call, _ in batch])
            except asyncio.CancelledError:
                for _, answer in batch:
                    answer.cancel()
                raise
            except Exception as exc:  # every fire in the call gets the error, and retries
                for _, answer in batch:
                    if not answer.done():
                        answer.set_exception(exc)
                continue
            for (_, answer), emission in zip(batch, emissions, strict=True):
                if not answer.done():
                    answer.set_result(emission)

    def _take(self) -> list[_Waiting]:
        batch: list[_Waiting] = []
        while self._waiting and len(batch) < self._max_batch:
            waiting = self._waiting.popleft()
            if not waiting[1].done():  # a cancelled fire needs no emission
                batch.append(waiting)
        return batch

    async def close(self) -> None:
        """Cancel the calls in flight (shutdown); waiting fires are cancelled too."""
        for task in list(self._calls):
            task.cancel()
        await asyncio.gather(*self._calls, return_exceptions=True)
        while self._waiting:
            self._waiting.popleft()[1].cancel()
