"""The connection to one lock master, as the Redlock client (`campaign_common.redlock.client`)
sees it: the `MasterNode` interface and its failure.

`MasterNode.call(script, parts, wire, sink, index)` sends one EVALSHA and has ``sink(index,
reply)`` invoked exactly once with the reply (an ``int``, ``bytes``, ``None``) or with an
``Exception`` instance (the master's error reply, or `NodeUnavailable` when the master cannot be
reached or stalls).
Callbacks run on the event loop, never inside ``call`` itself, so a caller can fan out to every
master before any reply is handled. Two implementations:

- `campaign_common.redlock.pipelined_node.PipelinedNode` (the default) keeps ONE connection per
  master and pipelines every request on it: requests issued during one event-loop iteration
  leave in one ``write``, replies are parsed by hiredis in ``data_received`` and handed to their
  callbacks in order. No task, lock or pool checkout per request, which is what makes the
  client several times faster than a client that goes through redis-py's per-command path
  (see docs/benchmarks.md). It takes its address, db, credentials and TLS settings from the
  redis-py client it is given (`campaign_common.redlock.connect_params`). In-order pipelining
  also means a request sent after another on the same master runs after it.
- `campaign_common.redlock.redis_py_node.RedisPyNode` sends each request as its own task
  through the redis-py client (any connection type redis-py supports, at redis-py's speed;
  ordering between requests is not guaranteed).

Every wait is bounded: connecting by ``connect_timeout_s``; a connection with requests
outstanding and no reply for ``stall_timeout_s`` is aborted and its requests fail. After a
failed connect the node fails requests at once for a short, growing back-off instead of
reconnecting on every call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from campaign_common.errors import CampaignCommonError
from campaign_common.redlock.scripts import LuaScript

log = logging.getLogger(__name__)

ReplyCallback = Callable[[object], None]
# Takes the index the request was sent with, then the reply: one bound method serves every
# master of a round, with no per-request closure.
ReplySink = Callable[[int, object], None]


class NodeUnavailable(CampaignCommonError):
    """A master could not be reached, dropped the connection, or stopped answering."""


class MasterNode(Protocol):
    address: str
    # The master answers DELIFEQ on the connection a request sent now goes to: a RELEASE may go
    # as that native command instead of the script (same reply: 1 deleted, 0 not ours).
    native_release: bool

    def call(
        self,
        script: LuaScript,
        parts: tuple[bytes, ...],
        wire: bytes,
        sink: ReplySink,
        index: int,
    ) -> None: ...

    async def connect(self) -> None: ...

    async def aclose(self, timeout_s: float) -> None: ...


def deliver(callback: Callable[..., None], reply: object, index: int = -1) -> None:
    """Hand ``reply`` to ``callback`` (a `ReplySink` with ``index`` when ``index >= 0``); a
    handler that raises is logged, never propagated into the connection that read the reply."""
    try:
        if index < 0:
            callback(reply)
        else:
            callback(index, reply)
    except Exception:
        log.exception("redlock reply handler failed")
