"""The arq side of bench/run_path.py; runs in the peers venv (`.venv-peers`), never in `.venv`.

arq pins ``redis<6`` while the product uses redis-py 8, so arq lives in a venv of its own
(`make bench-peers` creates it) and bench/run_path.py drives it through this script:

    .venv-peers/bin/python bench/arq_peer.py enqueue REDIS_URL N DUE_UNIX_MS PAGE_URL fetch|noop
    .venv-peers/bin/python bench/arq_peer.py worker REDIS_URL [POLL_DELAY_S]
    .venv-peers/bin/python bench/arq_peer.py collect REDIS_URL N

``enqueue`` defers N jobs to one instant (``_defer_until``) and prints how long
that took; ``worker`` is one arq worker with
50 jobs in flight (``max_jobs=50``), arq's defaults otherwise (``poll_delay`` 0.5 s unless
given), until SIGTERM; ``collect``
prints one JSON line: jobs found, succeeded, and the latest start and finish (unix ms).
``fetch`` does what a run of ours does for one page: an httpx GET and one selectolax field.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from arq import create_pool
from arq.connections import RedisSettings
from arq.jobs import Job
from arq.worker import Worker
from selectolax.lexbor import LexborHTMLParser

MAX_JOBS = 50
SELECTOR = ".price"


async def fetch(ctx: dict[str, Any], url: str) -> str | None:
    response = await ctx["http"].get(url)
    response.raise_for_status()
    node = LexborHTMLParser(response.text).css_first(SELECTOR)
    return node.text(strip=True) if node is not None else None


async def noop(ctx: dict[str, Any], url: str) -> None:
    return None


async def startup(ctx: dict[str, Any]) -> None:
    ctx["http"] = httpx.AsyncClient(
        timeout=10.0,
        follow_redirects=True,
        max_redirects=5,
        limits=httpx.Limits(max_connections=MAX_JOBS, max_keepalive_connections=MAX_JOBS),
    )


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["http"].aclose()


def job_id(n: int) -> str:
    return f"bench-{n}"


async def enqueue(url: str, runs: int, due_ms: int, page: str, function: str) -> None:
    pool = await create_pool(RedisSettings.from_dsn(url))
    due = datetime.fromtimestamp(due_ms / 1000, UTC)
    started = time.perf_counter()
    for n in range(runs):
        await pool.enqueue_job(function, page, _job_id=job_id(n), _defer_until=due)
    elapsed_s = time.perf_counter() - started
    await pool.aclose()
    print(json.dumps({"enqueued": runs, "elapsed_s": elapsed_s}))


def worker(url: str, poll_delay_s: float) -> None:
    Worker(
        functions=[fetch, noop],
        redis_settings=RedisSettings.from_dsn(url),
        max_jobs=MAX_JOBS,
        poll_delay=poll_delay_s,
        on_startup=startup,
        on_shutdown=shutdown,
        keep_result=3600,
    ).run()


async def collect(url: str, runs: int) -> None:
    pool = await create_pool(RedisSettings.from_dsn(url))
    found = ok = 0
    last_start = last_finish = 0.0
    for n in range(runs):
        try:
            info = await Job(job_id(n), pool).result_info()
        except Exception:
            info = None
        if info is None:
            continue
        found += 1
        ok += bool(info.success)
        last_start = max(last_start, info.start_time.timestamp() * 1000)
        last_finish = max(last_finish, info.finish_time.timestamp() * 1000)
    await pool.aclose()
    print(
        json.dumps({"found": found, "ok": ok, "last_start": last_start, "last_finish": last_finish})
    )


def main() -> None:
    command, url, *rest = sys.argv[1:]
    if command == "enqueue":
        asyncio.run(enqueue(url, int(rest[0]), int(rest[1]), rest[2], rest[3]))
    elif command == "worker":
        worker(url, float(rest[0]) if rest else 0.5)
    elif command == "collect":
        asyncio.run(collect(url, int(rest[0])))
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main()
