"""Tailing run changes for WatchRuns: every partition's runs stream (run requests) and run
events stream (every later change), merged in entry order, each change named by a resumable
position.

A position is the list of stream entry ids read so far (two per partition), as an opaque
token (`campaign_common.page_tokens`); an empty one means "from now". A position from a
deployment with another partition count is refused as invalid.

Reading: one non-blocking XREAD per partition (its two streams share a slot, so this works on
a Redis Cluster), all in one pipeline; when none has anything new, the next poll follows
after ``poll_ms``, up to ``block_ms`` in all, so a watcher notices a closed call or a stopping
server promptly.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from campaign_common.envelope import Envelope, EnvelopeError, decode_body
from campaign_common.page_tokens import decode_page_token, encode_page_token
from campaign_common.runs.keys import Partition, Partitions

_ENTRY_ID = r"[0-9]{1,20}-[0-9]{1,20}"
BATCH = 200
POLL_MS = 100


@dataclass(frozen=True)
class Change:
    run_id: str
    partition: Partition  # where the run's keys are
    position: str  # resume after this change


def _sort_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


def _run_id(fields: dict[bytes, bytes]) -> str | None:
    try:
        body = decode_body(Envelope.from_fields(fields))
    except EnvelopeError:
        return None
    run_id = getattr(body, "run_id", None) if body is not None else None
    return run_id if isinstance(run_id, str) and run_id else None


class RunWatch:
    def __init__(
        self, redis: Redis, partitions: Partitions, block_ms: int = 1000, poll_ms: int = POLL_MS
    ) -> None:
        self._redis = redis
        self._partitions = partitions
        # Stream i of the position: partition i // 2, its runs (even) or events (odd) stream.
        self._streams = [stream for p in partitions for stream in (p.runs_stream, p.events_stream)]
        self._position = re.compile(r"\|".join([_ENTRY_ID] * len(self._streams)))
        self._block_ms = block_ms
        self._poll_ms = poll_ms

    async def start(self, position: str) -> list[str]:
        """The entry ids to read after: from ``position``, or the streams' ends (now)."""
        if position:
            decoded = decode_page_token(position, lambda text: bool(self._position.fullmatch(text)))
            return decoded.split("|")
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream in self._streams:
                pipe.xrevrange(stream, count=1)
            newest: Any = await pipe.execute()
        return [entries[0][0].decode() if entries else "0-0" for entries in newest]

    async def changes(self, after: list[str]) -> list[Change]:
        """The next changes after ``after`` (updated in place), oldest first; [] after a wait."""
        deadline = time.monotonic() + self._block_ms / 1000
        while True:
            entries = await self._read(after)
            if entries or time.monotonic() >= deadline:
                break
            await asyncio.sleep(min(self._poll_ms / 1000, max(0.0, deadline - time.monotonic())))
        entries.sort(key=lambda entry: _sort_key(entry[0]))
        found: list[Change] = []
        for entry_id, index, fields in entries:
            after[index] = entry_id
            run_id = _run_id(fields)
            if run_id is not None:
                partition = self._partitions[index // 2]
                found.append(Change(run_id, partition, encode_page_token("|".join(after))))
        return found

    async def _read(self, after: list[str]) -> list[tuple[str, int, dict[bytes, bytes]]]:
        """(entry id, stream index, fields) of what every partition has after ``after``."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for i in range(0, len(self._streams), 2):
                pipe.xread(
                    {self._streams[i]: after[i], self._streams[i + 1]: after[i + 1]},
                    count=BATCH,
                )
            replies: Any = await pipe.execute()
        entries: list[tuple[str, int, dict[bytes, bytes]]] = []
        for reply in replies:
            for stream, stream_entries in reply or ():
                name = stream.decode() if isinstance(stream, bytes) else stream
                index = self._streams.index(name)
                entries += [
                    (entry_id.decode(), index, fields) for entry_id, fields in stream_entries
                ]
        return entries
