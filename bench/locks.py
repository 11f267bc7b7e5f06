"""Redlock benchmark: acquire+release cycles per second on three local lock masters.

    .venv/bin/python bench/locks.py [--seconds 5] [--tasks 50] [--only ours,aioredlock,...]

Starts its own three masters (`EmbeddedStack(lock_masters=3)`) and measures, one after another
on the same masters, for each client:

- sequential: one task (pottery: one thread) doing acquire+release in a loop;
- concurrent: ``--tasks`` tasks (pottery, which is synchronous: that many threads), each on its
  own key, doing acquire+release in a loop.

Each measurement runs ``--seconds`` after a short warm-up. It reports cycles/s and the p50/p99
latency of ``acquire`` alone, then the ratios ours/aioredlock. Every client uses a 10 s TTL
and its defaults otherwise; our client is `campaign_common.redlock.client.Redlock` (pipelined).
``ours-redis-py`` is the same client with ``pipelined=False`` (every request through
redis-py's own command path), to show what the pipelined transport buys. The results are
written up in docs/benchmarks.md. Needs the bench peers installed:
``.venv/bin/pip install aioredlock pottery``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import logging
import os
import platform
import statistics
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
from redis.asyncio import Redis

from campaign_common.localstack.embedded import EmbeddedStack
from campaign_common.redlock.client import Redlock
from campaign_common.redlock.stats import AttemptStats

TTL_MS = 10_000
WARMUP_S = 0.5


@dataclass
class Sample:
    """What one worker measured: completed cycles, acquire latencies (ns), errors (calls that
    raised or returned a failure), failed attempts the client retried internally."""

    cycles: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    errors: int = 0
    failed_attempts: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    warmup_errors: int = 0
    warmup_failed_attempts: int = 0

    def error(self, exc: BaseException | str) -> None:
        self.errors += 1
        self.kinds[exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"[:80]] += 1

    def reset(self) -> None:
        """End of the warm-up: its cycles are discarded, its failures kept apart."""
        self.warmup_errors += self.errors
        self.warmup_failed_attempts += self.failed_attempts
        self.kinds = Counter({f"warm-up: {kind}": n for kind, n in self.kinds.items()})
        self.cycles, self.latencies_ns, self.errors, self.failed_attempts = 0, [], 0, 0


# The sample of the asyncio task whose acquire is running (for failed-attempt hooks).
CURRENT: contextvars.ContextVar[Sample] = contextvars.ContextVar("current_sample")


@dataclass
class Result:
    client: str
    mode: str
    cycles_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    failed_attempts: int
    kinds: Counter[str]
    warmup: str


def summarise(client: str, mode: str, samples: list[Sample], seconds: float) -> Result:
    latencies = sorted(ns for sample in samples for ns in sample.latencies_ns)
    errors = sum(s.errors for s in samples)
    failed = sum(s.failed_attempts for s in samples)
    kinds: Counter[str] = sum((s.kinds for s in samples), Counter())
    warmup = (
        f"{sum(s.warmup_errors for s in samples)} / "
        f"{sum(s.warmup_failed_attempts for s in samples)}"
    )
    if not latencies:
        return Result(client, mode, 0.0, float("nan"), float("nan"), errors, failed, kinds, warmup)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return Result(
        client,
        mode,
        sum(s.cycles for s in samples) / seconds,
        statistics.median(latencies) / 1e6,
        p99 / 1e6,
        errors,
        failed,
        kinds,
        warmup,
    )


# -- asyncio clients ---------------------------------------------------------------------------

AsyncCycle = Callable[[str, Sample], Awaitable[None]]


async def run_async(cycle: AsyncCycle, prefix: str, tasks: int, seconds: float) -> list[Sample]:
    """``tasks`` workers on distinct keys: warm up, then measure for ``seconds``."""
    samples = [Sample() for _ in range(tasks)]
    phase = {"stop": False}

    async def worker(index: int) -> None:
        key = f"{prefix}-{index}"
        CURRENT.set(samples[index])
        while not phase["stop"]:
            await cycle(key, samples[index])

    workers = [asyncio.create_task(worker(i)) for i in range(tasks)]
    await asyncio.sleep(WARMUP_S)
    for sample in samples:  # warm-up cycles are discarded, its failures reported apart
        sample.reset()
    started = time.monotonic()
    await asyncio.sleep(seconds)
    phase["stop"] = True
    elapsed = time.monotonic() - started
    await asyncio.gather(*workers)
    for sample in samples:  # normalise to the measured window
        sample.cycles = round(sample.cycles * seconds / elapsed)
    return samples


async def bench_ours(
    urls: list[str], tasks: int, seconds: float, *, pipelined: bool = True
) -> list[Sample]:
    clients = [Redis.from_url(url) for url in urls]

    def on_attempt(stats: AttemptStats) -> None:
        if stats.operation == "release":
            if stats.granted >= stats.nodes // 2 + 1:
                return
            # not an exception (releasing an expired lease is benign), but worth showing
            kind = f"release deleted on {stats.granted} of {stats.nodes} masters"
        elif stats.outcome in ("granted", "extended"):
            return
        else:  # retried inside acquire, or the last attempt (then also an error)
            kind = f"{stats.operation} attempt {stats.outcome}"
        sample = CURRENT.get()
        sample.failed_attempts += 1
        sample.kinds[kind] += 1

    redlock = Redlock(clients, pipelined=pipelined, on_attempt=on_attempt)
    await redlock.connect()

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

    try:
        return await run_async(cycle, f"ours-{pipelined}", tasks, seconds)
    finally:
        print(f"  ours: {redlock.counters}", file=sys.stderr)
        await redlock.aclose()
        for client in clients:
            await client.aclose()


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
    started = time.monotonic()
    time.sleep(seconds)
    stop.set()
    elapsed = time.monotonic() - started
    for thread in pool:
        thread.join(timeout=30)
    for sample in samples:
        sample.cycles = round(sample.cycles * seconds / elapsed)
    for master in masters:
        master.close()
    PotteryRedlock._acquire_masters = acquire_masters  # type: ignore[method-assign]
    return samples


# -- driver ------------------------------------------------------------------------------------


def machine(stack: EmbeddedStack) -> dict[str, str]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = redis.Redis.from_url(stack.locks[0].url).info("server")
    server = (
        f"{info.get('server_name', 'redis')} {info.get('valkey_version') or info['redis_version']}"
    )
    return {
        "cores (nproc)": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "server": server,
    }


def flush(stack: EmbeddedStack) -> None:
    for server in stack.locks:
        client = redis.Redis.from_url(server.url)
        client.flushall()
        client.close()


def measure(name: str, urls: list[str], tasks: int, seconds: float) -> list[Sample]:
    if name == "pottery":
        return bench_pottery(urls, tasks, seconds)
    if name == "ours-redis-py":
        return asyncio.run(bench_ours(urls, tasks, seconds, pipelined=False))
    runner = bench_ours if name == "ours" else bench_aioredlock
    return asyncio.run(runner(urls, tasks, seconds))


def print_table(results: list[Result]) -> None:
    print(
        "| client | mode | cycles/s | acquire p50 ms | acquire p99 ms | errors "
        "| failed attempts (retried inside the client) | warm-up: errors / failed attempts |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r.client} | {r.mode} | {r.cycles_per_s:,.0f} | {r.p50_ms:.3f} | {r.p99_ms:.3f}"
            f" | {r.errors} | {r.failed_attempts} | {r.warmup} |"
        )
    failing = [r for r in results if r.kinds]
    if failing:
        print("\nWhat failed, by variant (warm-up included, marked):")
    for r in failing:
        detail = "; ".join(f"{count} x {kind}" for kind, count in r.kinds.most_common(5))
        print(f"- {r.client}, {r.mode}: {detail}")


def print_ratios(results: list[Result]) -> None:
    by_key = {(r.client, r.mode): r for r in results}
    for mode in dict.fromkeys(r.mode for r in results):
        ours = by_key.get(("ours", mode))
        for peer in ("aioredlock", "pottery"):
            other = by_key.get((peer, mode))
            if ours and other and other.cycles_per_s:
                ratio = ours.cycles_per_s / other.cycles_per_s
                print(f"ours/{peer}, {mode}: {ratio:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per run")
    parser.add_argument("--tasks", type=int, default=50, help="concurrent tasks/threads")
    parser.add_argument(
        "--only", default="ours,ours-redis-py,aioredlock,pottery", help="comma-separated"
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # aioredis 1.x warns about deprecated asyncio/distutils use
    logging.disable(logging.WARNING)
    names = [name.strip() for name in args.only.split(",") if name.strip()]
    with_stack = EmbeddedStack(lock_masters=3).start()
    try:
        for key, value in machine(with_stack).items():
            print(f"{key}: {value}")
        print(f"TTL {TTL_MS} ms, {args.seconds:g} s per run after {WARMUP_S:g} s warm-up\n")
        results = []
        for tasks, mode in ((1, "sequential"), (args.tasks, f"{args.tasks} concurrent")):
            for name in names:
                flush(with_stack)
                samples = measure(name, with_stack.lock_urls, tasks, args.seconds)
                results.append(summarise(name, mode, samples, args.seconds))
                print(f"  measured {name}, {mode}", file=sys.stderr)
        print_table(results)
        print()
        print_ratios(results)
    finally:
        with_stack.stop()


if __name__ == "__main__":
    main()
