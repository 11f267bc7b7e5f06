"""`RedisPyNode`: one lock master through a redis-py client, one task per request (any
connection type redis-py supports, at redis-py's speed; see `campaign_common.redlock.channel`).
"""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from campaign_common.redlock.channel import NodeUnavailable, ReplySink, deliver
from campaign_common.redlock.connect_params import describe_client
from campaign_common.redlock.scripts import LuaScript


class RedisPyNode:
    """One lock master through a redis-py client, one task per request."""

    def __init__(self, client: Redis, *, stall_timeout_s: float) -> None:
        self.client = client
        self.address = describe_client(client)
        self.stall_timeout_s = stall_timeout_s
        self.native_release = False  # always the RELEASE script
        self._tasks: set[asyncio.Task[None]] = set()

    def call(
        self,
        script: LuaScript,
        parts: tuple[bytes, ...],
        wire: bytes,
        sink: ReplySink,
        index: int,
    ) -> None:
        task = asyncio.get_running_loop().create_task(self._run(script, parts, sink, index))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(
        self, script: LuaScript, parts: tuple[bytes, ...], sink: ReplySink, index: int
    ) -> None:
        reply: object
        try:
            async with asyncio.timeout(self.stall_timeout_s):
                reply = await self._evalsha(script, parts)
        except TimeoutError:
            reply = NodeUnavailable(f"{self.address}: no reply for {self.stall_timeout_s:.2f} s")
        except Exception as exc:  # the master's error reply or a connection error
            reply = NodeUnavailable(f"{self.address}: {exc}")
        deliver(sink, reply, index)

    async def _evalsha(self, script: LuaScript, parts: tuple[bytes, ...]) -> object:
        sha = script.sha.decode()
        try:
            return await self.client.evalsha(sha, script.numkeys, *parts)
        except NoScriptError:
            await self.client.script_load(script.source.decode())
            return await self.client.evalsha(sha, script.numkeys, *parts)

    async def connect(self) -> None:
        async with asyncio.timeout(self.stall_timeout_s):
            try:
                await self.client.ping()
            except Exception as exc:
                raise NodeUnavailable(f"{self.address}: {exc}") from exc

    async def aclose(self, timeout_s: float) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)
        for task in self._tasks:
            task.cancel()
