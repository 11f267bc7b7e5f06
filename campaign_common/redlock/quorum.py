"""One script over the lock masters, decided at quorum, and what a failed round means.

`_Round` collects the replies of one request by callbacks (no task per master); `_Deadlines`
times out the rounds of the common per-node timeout with one loop timer between them (a timer
per round, created and cancelled, was the largest cost of the client after the replies);
`MasterQuorum`, the base of `campaign_common.redlock.client.Redlock`, fans a script out to the
masters and turns a round that fell short into `LockHeld` or `QuorumUnavailable`, or the
detail of a refused extension.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from campaign_common.redlock.channel import MasterNode
from campaign_common.redlock.errors import LockError, LockHeld, QuorumUnavailable
from campaign_common.redlock.scripts import LuaScript

_PENDING: Any = object()
_SWEEP_S = 0.01


def _granted(reply: object) -> bool:
    return type(reply) is int and reply > 0


class _Round:
    """One request to a set of masters, resolved by reply callbacks (no task per master).

    The future resolves when every targeted master answered, at the per-node timeout, or
    (unless ``wait_all``) as soon as ``need`` masters granted or that became impossible.
    Replies that arrive afterwards are still recorded and passed to ``late``.
    """

    __slots__ = (
        "bad",
        "deadline",
        "expected",
        "future",
        "late",
        "need",
        "ok",
        "replies",
        "timed_out",
        "timeout_s",
        "timer",
        "wait_all",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        size: int,
        expected: int,
        need: int,
        timeout_s: float,
        wait_all: bool,
    ) -> None:
        self.replies: list[object] = [_PENDING] * size
        self.expected = expected
        self.need = need
        self.wait_all = wait_all
        self.timeout_s = timeout_s
        self.ok = 0
        self.bad = 0
        self.timed_out = False
        self.late: Callable[[int, object], None] | None = None
        self.future: asyncio.Future[None] = loop.create_future()
        self.timer: asyncio.TimerHandle | None = None  # own timer, else set by `_Deadlines`
        self.deadline = 0.0

    def on_reply(self, index: int, reply: object) -> None:
        self.replies[index] = reply
        if self.future.done():
            if self.late is not None:
                self.late(index, reply)
            return
        if type(reply) is int and reply > 0:
            self.ok += 1
            decided = self.ok >= self.need and not self.wait_all
        else:
            self.bad += 1
            decided = self.bad > self.expected - self.need and not self.wait_all
        if decided or self.ok + self.bad == self.expected:
            if self.timer is not None:
                self.timer.cancel()
            self.future.set_result(None)

    def on_timeout(self) -> None:
        if not self.future.done():
            self.timed_out = True
            self.future.set_result(None)


class _Deadlines:
    """The rounds of one timeout, in the order they started (so in deadline order), timed out
    by one loop timer armed for the oldest round still waiting. Rounds that finished are simply
    dropped when the timer fires: nothing to cancel per round. The timer also fires every
    `_SWEEP_S` to drop them, so finished rounds are not kept for a whole timeout: kept that
    long they outlive the young garbage collections and make the full ones frequent."""

    __slots__ = ("_rounds", "_timer", "loop", "timeout_s")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
        self.loop = loop
        self.timeout_s = timeout_s
        self._rounds: deque[_Round] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, round_: _Round) -> None:
        now = self.loop.time()
        round_.deadline = now + self.timeout_s
        self._rounds.append(round_)
        if self._timer is None:
            self._timer = self.loop.call_at(min(round_.deadline, now + _SWEEP_S), self._expire)

    def _expire(self) -> None:
        self._timer = None
        now = self.loop.time()
        rounds = self._rounds
        while rounds:
            round_ = rounds[0]
            if not round_.future.done():
                if round_.deadline > now:
                    wake_at = min(round_.deadline, now + _SWEEP_S)
                    self._timer = self.loop.call_at(wake_at, self._expire)
                    return
                round_.on_timeout()
            rounds.popleft()


class MasterQuorum:
    """The masters of a Redlock client as a quorum: rounds over them, and their failures.

    ``quorum``, ``node_timeout_s`` and ``_nodes`` are set by the client's constructor.
    """

    quorum: int
    node_timeout_s: float
    _nodes: list[MasterNode]
    _deadlines: _Deadlines | None = None

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(node.address for node in self._nodes)

    async def reachable(self, timeout_s: float) -> tuple[bool, ...]:
        """Whether each master (in the order given) answers a PING within ``timeout_s`` over
        the connection the locks use: one that is down, stalled, refusing the connection's
        set-up or backing off after a failed connect is not. Never raises."""
        return tuple(await asyncio.gather(*(_answers(n, timeout_s) for n in self._nodes)))

    def _fan_out(
        self,
        script: LuaScript,
        parts: tuple[bytes, ...],
        targets: Sequence[int],
        need: int,
        timeout_s: float,
        *,
        wait_all: bool = False,
    ) -> _Round:
        wire = script.wire(*parts)
        return self._send(script, parts, wire, targets, need, timeout_s, wait_all)

    def _send(
        self,
        script: LuaScript,
        parts: tuple[bytes, ...],
        wire: bytes,
        targets: Sequence[int],
        need: int,
        timeout_s: float,
        wait_all: bool,
        native: bytes | None = None,
    ) -> _Round:
        """One request (``wire`` is the encoding of ``script`` with ``parts``) to ``targets``;
        ``native``, the same as one command, goes instead to the masters that answer it."""
        loop = asyncio.get_running_loop()
        round_ = _Round(loop, len(self._nodes), len(targets), need, timeout_s, wait_all)
        deadlines = self._deadlines
        if deadlines is not None and deadlines.timeout_s == timeout_s and deadlines.loop is loop:
            deadlines.add(round_)
        elif timeout_s == self.node_timeout_s:  # the common timeout: rounds share one timer
            self._deadlines = _Deadlines(loop, timeout_s)
            self._deadlines.add(round_)
        else:
            round_.timer = loop.call_later(timeout_s, round_.on_timeout)
        on_reply = round_.on_reply
        nodes = self._nodes
        for index in targets:
            node = nodes[index]
            request = native if native is not None and node.native_release else wire
            node.call(script, parts, request, on_reply, index)
        return round_

    def _node_timeout(self, ttl_ms: float) -> float:
        return min(self.node_timeout_s, ttl_ms / 10_000.0)

    def _refusal(self, resource: str, acquired: _Round) -> LockError:
        """LockHeld if the masters that answered would have been a quorum but for a holder."""
        held_on: list[str] = []
        failures: dict[str, str] = {}
        for node, reply in zip(self._nodes, acquired.replies, strict=True):
            if reply == 0:
                held_on.append(node.address)
            elif reply is _PENDING:
                if acquired.timed_out:
                    failures[node.address] = f"no reply within {acquired.timeout_s * 1000:.0f} ms"
            elif not _granted(reply):
                failures[node.address] = str(reply)
        if held_on and len(failures) <= len(self._nodes) - self.quorum:
            return LockHeld(resource, held_on)
        return QuorumUnavailable(resource, failures)

    def _late_error(
        self, resource: str, fence: int, ttl_ms: int, elapsed_ms: float, drift_ms: float
    ) -> QuorumUnavailable:
        if fence <= 0:
            return QuorumUnavailable(resource, {}, "fence not confirmed by a quorum of masters")
        return QuorumUnavailable(
            resource,
            {},
            f"validity exhausted: ttl {ttl_ms} ms - elapsed {elapsed_ms:.1f} ms"
            f" - drift {drift_ms:.1f} ms <= 0",
        )

    def _extension_failures(self, extended: _Round) -> str:
        notes = []
        for node, reply in zip(self._nodes, extended.replies, strict=True):
            if reply is _PENDING:
                notes.append(f"{node.address}: no reply")
            elif not _granted(reply):
                notes.append(f"{node.address}: {'not held' if reply == 0 else reply}")
        return f"{extended.ok}/{len(self._nodes)} confirmed; " + "; ".join(notes)


async def _answers(node: MasterNode, timeout_s: float) -> bool:
    try:
        async with asyncio.timeout(timeout_s):
            await node.connect()  # connected already: one PING round trip
    except Exception:  # timed out, connection lost or refused, an error reply: not reachable
        return False
    return True


def _ignore(index: int, reply: object) -> None:
    return None
