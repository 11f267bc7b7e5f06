"""What `bench/locks.py` measures: a worker's `Sample`, a variant's `Result`, and the asyncio
run of ``tasks`` workers (warm-up, then the measured window) with the process's CPU time.
"""

from __future__ import annotations

import asyncio
import contextvars
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

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
    # CPU seconds this process used per second of the measured window (on one sample per run)
    cpu_share: float = 0.0

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
    cpu_us_per_cycle: float = float("nan")


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
    cycles_per_s = sum(s.cycles for s in samples) / seconds
    cpu_share = sum(s.cpu_share for s in samples)
    return Result(
        client,
        mode,
        cycles_per_s,
        statistics.median(latencies) / 1e6,
        p99 / 1e6,
        errors,
        failed,
        kinds,
        warmup,
        cpu_share / cycles_per_s * 1e6 if cycles_per_s else float("nan"),
    )


class Window:
    """The measured window: its wall-clock and this process's CPU time (every thread)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.cpu_started = time.process_time()

    def close(self, samples: list[Sample], seconds: float) -> None:
        """Normalise the cycles to ``seconds`` and record the CPU share on the first sample."""
        elapsed = time.monotonic() - self.started
        cpu_s = time.process_time() - self.cpu_started
        for sample in samples:
            sample.cycles = round(sample.cycles * seconds / elapsed)
        samples[0].cpu_share = cpu_s / elapsed


AsyncCycle = Callable[[str, Sample], Awaitable[None]]


async def run_async(
    cycle: AsyncCycle,
    prefix: str,
    tasks: int,
    seconds: float,
    warmed_up: Callable[[], None] = lambda: None,
) -> list[Sample]:
    """``tasks`` workers on distinct keys: warm up (then ``warmed_up()``), then measure for
    ``seconds``."""
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
    warmed_up()
    window = Window()
    await asyncio.sleep(seconds)
    phase["stop"] = True
    window.close(samples, seconds)
    await asyncio.gather(*workers)
    return samples
