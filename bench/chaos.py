"""Chaos run: scraper workers SIGKILLed over and over while runs fail and retry.

Starts an embedded state Redis and three lock masters, a page server on 127.0.0.1 whose pages
answer 503 to a fifth of requests (at random) after 20-200 ms, and three `python -m
scraper_svc` workers. Requests N runs (each on its own campaign, retry policy 5 attempts from
0.1 s), and every `--kill-every` seconds SIGKILLs a random worker and starts a replacement
under a new name (a crashed pod coming back). Once every run has a final outcome (or the
deadline passes), prints the ledger from the run events stream:

    requested   runs asked for
    succeeded   exactly one final event, RunSucceeded
    dead        exactly one final event, RunDeadLettered (5 failed attempts)
    lost        no final event by the deadline
    duplicated  more than one final event for one run

    .venv/bin/python bench/chaos.py [runs] [--kill-every S]
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from campaign_common.localstack.embedded import EmbeddedStack
from campaign_common.redis_conn import make_client
from campaign_common.runs.log import RunLog
from campaign_common.timeutil import ms_to_timestamp, now_ms
from campaigns.v1 import events_pb2, run_pb2, schedule_pb2
from tests.support import (
    FINAL_EVENTS,
    PARTITIONS,
    ServiceProcess,
    event_run_id,
    run_event_bodies,
    scraper_process,
)

POLICY = schedule_pb2.RetryPolicy(max_attempts=5, initial_delay_seconds=0.1, max_delay_seconds=1)


class FlakyPages(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(random.uniform(0.02, 0.2))  # a slow target (this is the server's thread)
        status = 503 if random.random() < 0.2 else 200
        body = b"<h1>chaos</h1>"
        try:
            self.send_response(status)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            return  # the worker was killed while waiting

    def log_message(self, format: str, *args: object) -> None:
        return


def _worker(stack: EmbeddedStack, name: str) -> ServiceProcess:
    return scraper_process(
        stack.state.url,
        stack.lock_urls,
        name,
        SCRAPER_LOG_LEVEL="WARNING",
        SCRAPER_LOCK_TTL_MS="1000",
        SCRAPER_RECLAIM_IDLE_MS="2000",
        SCRAPER_RECLAIM_INTERVAL_S="0.2",
        SCRAPER_RETRY_POLL_MS="50",
        SCRAPER_PER_HOST_CONCURRENCY="8",
        SCRAPER_CONCURRENCY="4",
    )


def _request(n: int, url: str) -> events_pb2.RunRequested:
    return events_pb2.RunRequested(
        run_id=f"chaos:{n}",
        schedule_id="chaos",
        campaign_id=f"c{n}",
        scheduled_for=ms_to_timestamp(now_ms()),
        attempt=1,
        trigger=run_pb2.RUN_TRIGGER_MANUAL,
        scrape=schedule_pb2.ScrapeSpec(urls=[url], selectors={"t": "h1"}),
        retry_policy=POLICY,
    )


# Final events per run, last final type per run, attempts re-run, retries queued.
Ledger = tuple[Counter[str], dict[str, str], int, int]


async def _finals(redis: Redis, *, report: bool = False) -> Ledger:
    """Final events per run, the last final type per run, attempts re-run, retries queued."""
    finals: Counter[str] = Counter()
    kind: dict[str, str] = {}
    retries = 0
    starts: Counter[tuple[str, int]] = Counter()
    for body in await run_event_bodies(redis):
        run_id = event_run_id(body)
        if isinstance(body, events_pb2.RunDeadLettered) and report:
            cause = "deliveries" if body.error.startswith("delivered") else "attempts"
            print(f"dead letter ({cause}): {run_id} attempt {body.request.attempt}")
        if isinstance(body, events_pb2.RunStarted):
            starts[(run_id, body.attempt)] += 1
        if isinstance(body, events_pb2.RunRetryScheduled) and body.HasField("next_attempt_at"):
            retries += 1
        if isinstance(body, FINAL_EVENTS):
            finals[run_id] += 1
            kind[run_id] = type(body).__name__
    rerun = sum(count - 1 for count in starts.values() if count > 1)
    return finals, kind, rerun, retries


async def main(runs: int, kill_every_s: float, deadline_s: float) -> None:
    stack = EmbeddedStack(lock_masters=3).start()
    pages = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FlakyPages)
    threading.Thread(target=pages.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{pages.server_address[1]}/page"
    workers = [_worker(stack, f"w{n}") for n in range(3)]
    born = len(workers)
    kills = 0
    redis = make_client(stack.state.url, 10.0)
    try:
        log = RunLog(redis, PARTITIONS)
        for n in range(runs):
            await log.request_run(_request(n, url), dedupe=False)
        started = time.monotonic()
        next_kill = started + kill_every_s
        while time.monotonic() - started < deadline_s:
            finals, _, _, _ = await _finals(redis)
            if len(finals) >= runs:
                break
            if time.monotonic() >= next_kill:
                victim = random.randrange(len(workers))
                workers[victim].kill()
                workers[victim].close()
                workers[victim] = _worker(stack, f"w{born}")
                born, kills, next_kill = born + 1, kills + 1, next_kill + kill_every_s
            await asyncio.sleep(0.2)  # polling interval of this driver, not synchronisation
        elapsed = time.monotonic() - started
        finals, kind, rerun, retries = await _finals(redis, report=True)
    finally:
        await redis.aclose()
        for worker in workers:
            worker.close()
        pages.shutdown()
        stack.stop()
    ids = [f"chaos:{n}" for n in range(runs)]
    single = [r for r in ids if finals[r] == 1]
    print(
        f"requested={runs} succeeded={sum(kind[r] == 'RunSucceeded' for r in single)} "
        f"dead={sum(kind[r] == 'RunDeadLettered' for r in single)} "
        f"other={sum(kind[r] not in ('RunSucceeded', 'RunDeadLettered') for r in single)} "
        f"lost={sum(finals[r] == 0 for r in ids)} "
        f"duplicated={sum(finals[r] > 1 for r in ids)}"
    )
    print(
        f"workers SIGKILLed={kills}; attempts re-run after a kill={rerun}; "
        f"retries after a 503={retries}; drained in {elapsed:.1f} s"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", type=int, nargs="?", default=500)
    parser.add_argument("--kill-every", type=float, default=1.5)
    parser.add_argument("--deadline", type=float, default=300.0)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.kill_every, args.deadline))
