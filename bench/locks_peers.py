"""The clients `bench/locks.py` drives: ours (`Redlock`), aioredlock and pottery, each as a loop
of acquire+release cycles that fills `Sample` records (`bench.locks_samples`).
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from typing import Any

import redis
from redis.asyncio import Redis

from bench.locks_samples import CURRENT, TTL_MS, WARMUP_S, Sample, Window, run_async
from campaign_common.redlock.client import Redlock
from campaign_common.redlock.stats import RedlockCounters
from campaign_common.tls import TlsFiles

# What a failed attempt of ours is called, by the counter that counts it.
FAILURE_COUNTERS = {
    "held": "acquire attempt held",
    "unavailable": "acquire attempt unavailable",
    "expired": "acquire attempt expired",
    "released_expired": "release deleted on fewer than a quorum of masters",
}


def failures(counters: RedlockCounters) -> Counter[str]:
    return Counter({kind: getattr(counters, name) for name, kind in FAILURE_COUNTERS.items()})


async def bench_ours(
    urls: list[str], tasks: int, seconds: float, *, pipelined: bool = True, ca_file: str = ""
) -> list[Sample]:
    """Failed attempts (retried inside the client) come from the client's always-on counters,
    as cheap as the peers' hooks (a per-attempt ``on_attempt`` callback would add a record to
    every success, which the peers' counting does not)."""
    tls = TlsFiles(ca_file).redis_kwargs() if ca_file else {}
    clients = [Redis.from_url(url, **tls) for url in urls]
    redlock = Redlock(clients, pipelined=pipelined)
    await redlock.connect()
    at_warmup: Counter[str] = Counter()

    async def cycle(key: str, sample: Sample) -> None:
        started = time.perf_counter_ns()
        try:
            lease = await redlock.acquire(key, TTL_MS)
        except Exception as exc:
            sample.error(exc)
            return
        sample.latencies_ns.append(time.perf_counter_ns() - started)
        try:
            await redlock.release(lease)
        except Exception as exc:
            sample.error(exc)
            return
        sample.cycles += 1

    def warmed_up() -> None:
        at_warmup.update(failures(redlock.counters))

    try:
        samples = await run_async(cycle, f"ours-{pipelined}", tasks, seconds, warmed_up)
    finally:
        print(f"  ours: {redlock.counters}", file=sys.stderr)
        await redlock.aclose()
        for client in clients:
            await client.aclose()
    measured = failures(redlock.counters) - at_warmup
    first = samples[0]
    first.failed_attempts += sum(measured.values())
    first.warmup_failed_attempts += sum(at_warmup.values())
    first.kinds.update(+measured)
    first.kinds.update({f"warm-up: {kind}": n for kind, n in (+at_warmup).items()})
    return samples


async def bench_aioredlock(urls: list[str], tasks: int, seconds: float) -> list[Sample]:
    from aioredlock import Aioredlock  # type: ignore[import-untyped]

    masters = [
        {"host": "127.0.0.1", "port": int(url.rsplit(":", 1)[1].split("/")[0])} for url in urls
    ]
    manager = Aioredlock(masters)
    set_lock = manager.redis.set_lock

    async def counted_set_lock(*args: Any, **kwargs: Any) -> Any:
        try:
            return await set_lock(*args, **kwargs)
        except Exception as exc:  # aioredlock retries it (retry_count=3 by default)
            sample = CURRENT.get()
            sample.failed_attempts += 1
            sample.kinds[f"acquire attempt {type(exc).__name__}: {exc}"[:80]] += 1
            raise

    manager.redis.set_lock = counted_set_lock

    async def cycle(key: str, sample: Sample) -> None:
        started = time.perf_counter_ns()
        try:
            lock = await manager.lock(key, lock_timeout=TTL_MS / 1000)
        except Exception as exc:
            sample.error(exc)
            return
        sample.latencies_ns.append(time.perf_counter_ns() - started)
        try:
            await manager.unlock(lock)
        except Exception as exc:
            sample.error(exc)
            return
        sample.cycles += 1

    try:
        return await run_async(cycle, "aioredlock", tasks, seconds)
    finally:
        await manager.destroy()


# -- pottery (synchronous: threads) ------------------------------------------------------------


def bench_pottery(urls: list[str], threads: int, seconds: float) -> list[Sample]:
    from pottery import Redlock as PotteryRedlock

    masters = {redis.Redis.from_url(url, max_connections=4 * threads + 8) for url in urls}
    samples = [Sample() for _ in range(threads)]
    current = threading.local()  # the sample of this thread's cycle
    acquire_masters = PotteryRedlock._acquire_masters

    def counted(self: PotteryRedlock, *args: Any, **kwargs: Any) -> bool:
        # pottery's blocking acquire retries this until it succeeds; count each failure
        acquired = bool(acquire_masters(self, *args, **kwargs))
        if not acquired:
            current.sample.failed_attempts += 1
            current.sample.kinds["acquire attempt failed"] += 1
        return acquired

    PotteryRedlock._acquire_masters = counted  # type: ignore[method-assign]
    stop = threading.Event()

    def worker(index: int) -> None:
        lock = PotteryRedlock(
            key=f"pottery-{index}", masters=masters, auto_release_time=TTL_MS / 1000
        )
        sample = current.sample = samples[index]
        while not stop.is_set():
            started = time.perf_counter_ns()
            try:
                if not lock.acquire():
                    sample.error("acquire returned False")
                    continue
                sample.latencies_ns.append(time.perf_counter_ns() - started)
                lock.release()
            except Exception as exc:
                sample.error(exc)
                continue
            sample.cycles += 1

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for thread in pool:
        thread.start()
    time.sleep(WARMUP_S)
    for sample in samples:
        sample.reset()
    window = Window()
    time.sleep(seconds)
    stop.set()
    window.close(samples, seconds)
    for thread in pool:
        thread.join(timeout=30)
    for master in masters:
        master.close()
    PotteryRedlock._acquire_masters = acquire_masters  # type: ignore[method-assign]
    return samples
