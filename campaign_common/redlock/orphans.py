"""Orphans: the tokens of failed acquisition attempts whose clean-up is not confirmed yet.

A failed attempt may still hold keys on some masters: a master granted after the attempt gave
up (its reply was late, the request had timed out on our side), or the compare-and-delete that
undoes a grant has not run yet. Until every such master has answered and every release has
been confirmed, the attempt's token is an orphan of its resource. The next attempt on that
resource from this client, a retry of the same ``acquire`` or a later call, passes the orphans
to the ACQUIRE script, which takes an orphan's key over instead of reporting "held by another
owner" (`campaign_common.redlock.scripts`). That is safe because no lease was ever returned for
an orphan token, and it never touches another owner's key: tokens are random and never shared.

A released lease whose release was not confirmed on every master (no reply in time, or a
failed connection) leaves its token in the same registry: the lease is over, so its key on such
a master is nobody's, and the next acquisition of the resource takes it over.

The registry stays small: a token leaves it when its last debt is settled, which every node
guarantees (each request's callback runs exactly once, with the reply or with an error after
the stall timeout), and at most `TAKEOVER_MAX` tokens per resource are passed on. One debt is
settled by time instead: a request whose outcome is unknown (the connection failed or stalled
after it may have been written) may still run on its master after our release of it ran (the
release goes out on another connection), so the token stays an orphan for the attempt's ttl,
as long as a key set by that request can live.
"""

from __future__ import annotations

import asyncio

from campaign_common.redlock.channel import NodeUnavailable

TAKEOVER_MAX = 8


class Orphan:
    """One failed attempt's token and what it still owes: replies not in, releases not
    confirmed. It leaves the registry when nothing is owed any more."""

    __slots__ = ("_registry", "key", "linger_s", "owed", "token")

    def __init__(
        self, registry: Orphans, key: bytes, token: bytes, owed: int, linger_s: float
    ) -> None:
        self._registry = registry
        self.key = key
        self.token = token
        self.owed = owed
        self.linger_s = linger_s

    def settle(self, count: int = 1) -> None:
        if count <= 0 or self.owed <= 0:
            return
        self.owed -= count
        if self.owed <= 0:
            self._registry.forget(self)

    def unknown(self) -> None:
        """A request's outcome is unknown: stay an orphan for ``linger_s`` more."""
        self.owed += 1
        asyncio.get_running_loop().call_later(self.linger_s, self.settle)

    def unknowns(self, replies: list[object]) -> None:
        """Linger once for each request of ``replies`` whose outcome is unknown."""
        for reply in replies:
            if isinstance(reply, NodeUnavailable):
                self.unknown()

    def on_reply(self, reply: object) -> None:
        """A release's reply settles its debt; a failed one leaves the key: linger for it."""
        if isinstance(reply, NodeUnavailable):
            self.unknown()
        self.settle()

    def on_late(self, index: int, reply: object) -> None:
        self.on_reply(reply)


class Orphans:
    """The orphan tokens of one Redlock client, by lock key."""

    def __init__(self) -> None:
        self._by_key: dict[bytes, list[bytes]] = {}

    def tokens(self, key: bytes) -> tuple[bytes, ...]:
        """The newest orphans of ``key``, for the ACQUIRE script to take over."""
        tokens = self._by_key.get(key)
        return tuple(tokens[-TAKEOVER_MAX:]) if tokens else ()

    def adopt(
        self, key: bytes, token: bytes, owed: int, linger_s: float, replies: list[object]
    ) -> Orphan:
        """Register ``token`` while ``owed`` replies or releases are outstanding, and for
        ``linger_s`` after each request of ``replies`` whose outcome is unknown."""
        orphan = Orphan(self, key, token, owed, linger_s)
        orphan.unknowns(replies)
        if orphan.owed > 0:
            tokens = self._by_key.setdefault(key, [])
            tokens.append(token)
            del tokens[: -4 * TAKEOVER_MAX]  # the oldest go first (they are passed on last)
        return orphan

    def forget(self, orphan: Orphan) -> None:
        tokens = self._by_key.get(orphan.key)
        if tokens is None or orphan.token not in tokens:
            return
        tokens.remove(orphan.token)
        if not tokens:
            del self._by_key[orphan.key]

    def __len__(self) -> int:
        return sum(len(tokens) for tokens in self._by_key.values())
