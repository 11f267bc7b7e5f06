"""Throughput of the retry delay queue: queueing failed attempts and moving due ones.

Starts an embedded state Redis, queues N next attempts (`RetryQueue.schedule`, one script
each: event, projection, delay queue, ack) from 16 concurrent tasks, all due at once, then
moves them to the runs stream with `RetryQueue.move_due` in batches of 100 from 1 and from 3
concurrent movers (as 3 scraper workers would). Prints rates and checks that every retry was
moved exactly once.

    .venv/bin/python bench/retry_queue.py [retries]
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from campaign_common.localstack.embedded import EmbeddedRedis
from campaign_common.redis_conn import make_client
from campaign_common.runs.retryqueue import RetryQueue
from campaign_common.runs.writer import Writer
from campaign_common.timeutil import ms_to_timestamp, now_ms
from campaigns.v1 import events_pb2, run_pb2, schedule_pb2
from tests.support import PARTITIONS, runs_stream, xlen_all


def _request(n: int) -> events_pb2.RunRequested:
    return events_pb2.RunRequested(
        run_id=f"bench:{n}",
        schedule_id="bench",
        campaign_id=f"c{n % 50}",
        scheduled_for=ms_to_timestamp(now_ms()),
        attempt=1,
        trigger=run_pb2.RUN_TRIGGER_SCHEDULED,
        scrape=schedule_pb2.ScrapeSpec(urls=["https://example.com/"], selectors={"t": "h1"}),
    )


async def _queue(queue: RetryQueue, retries: int, tasks: int = 16) -> float:
    async def worker(offset: int) -> None:
        for n in range(offset, retries, tasks):
            request = _request(n)
            await queue.schedule(request, "HTTP 503", now_ms(), writer=Writer(request.campaign_id))

    started = time.perf_counter()
    await asyncio.gather(*[worker(k) for k in range(tasks)])
    return retries / (time.perf_counter() - started)


async def _move(queues: list[RetryQueue]) -> tuple[float, int]:
    moved = 0

    async def mover(queue: RetryQueue) -> None:
        nonlocal moved
        while count := sum([await queue.move_due(p, 100) for p in PARTITIONS]):
            moved += count

    started = time.perf_counter()
    await asyncio.gather(*[mover(queue) for queue in queues])
    return moved / (time.perf_counter() - started), moved


async def main(retries: int) -> None:
    redis = EmbeddedRedis("bench-retries").start()
    clients = [make_client(redis.url, 5.0) for _ in range(3)]
    try:
        for movers in (1, 3):
            await clients[0].flushall()
            queue_rate = await _queue(RetryQueue(clients[0], PARTITIONS), retries)
            move_rate, moved = await _move([RetryQueue(c, PARTITIONS) for c in clients[:movers]])
            in_stream = await xlen_all(clients[0], runs_stream)
            assert moved == retries == in_stream, (moved, retries, in_stream)
            print(
                f"{retries} retries: queued {queue_rate:,.0f}/s (16 tasks); moved "
                f"{move_rate:,.0f}/s with {movers} mover(s); each moved once: {moved == in_stream}"
            )
    finally:
        for client in clients:
            await client.aclose()
        redis.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000))
