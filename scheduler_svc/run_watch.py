"""Tailing run changes for WatchRuns: the runs stream (run requests) and the run events stream
(every later change), merged in entry order, each change named by a resumable position.

A position is the pair of stream entry ids read so far, as an opaque token
(`campaign_common.page_tokens`); an empty one means "from now". Reading blocks at most
``block_ms`` so a watcher notices a closed call or a stopping server promptly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from campaign_common.envelope import Envelope, EnvelopeError, decode_body
from campaign_common.page_tokens import decode_page_token, encode_page_token
from campaign_common.runs.keys import RUN_EVENTS_STREAM, RUNS_STREAM

_STREAMS = (RUNS_STREAM, RUN_EVENTS_STREAM)
_POSITION = re.compile(r"[0-9]+-[0-9]+\|[0-9]+-[0-9]+")
BATCH = 200


@dataclass(frozen=True)
class Change:
    run_id: str
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
    def __init__(self, redis: Redis, block_ms: int = 1000) -> None:
        self._redis = redis
        self._block_ms = block_ms

    async def start(self, position: str) -> list[str]:
        """The entry ids to read after: from ``position``, or the streams' ends (now)."""
        if position:
            decoded = decode_page_token(position, lambda text: bool(_POSITION.fullmatch(text)))
            return decoded.split("|")
        ids = []
        for stream in _STREAMS:
            newest: Any = await self._redis.xrevrange(stream, count=1)
            ids.append(newest[0][0].decode() if newest else "0-0")
        return ids

    async def changes(self, after: list[str]) -> list[Change]:
        """The next changes after ``after`` (updated in place), oldest first; [] after a wait."""
        reply: Any = await self._redis.xread(
            dict(zip(_STREAMS, after, strict=True)), count=BATCH, block=self._block_ms
        )
        entries: list[tuple[str, int, dict[bytes, bytes]]] = []
        for stream, stream_entries in reply or ():
            index = _STREAMS.index(stream.decode() if isinstance(stream, bytes) else stream)
            entries += [(entry_id.decode(), index, fields) for entry_id, fields in stream_entries]
        entries.sort(key=lambda entry: _sort_key(entry[0]))
        found: list[Change] = []
        for entry_id, index, fields in entries:
            after[index] = entry_id
            run_id = _run_id(fields)
            if run_id is not None:
                found.append(Change(run_id, encode_page_token("|".join(after))))
        return found
