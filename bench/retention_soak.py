"""Retention soak: state Redis memory at the retention horizon and after a long soak.

An embedded stack (state Valkey and three lock masters), the scheduler and one scraper
in-process (`tests/retention_soak.py`), SCHEDULES interval schedules firing every second,
every retention RETENTION_S seconds. Samples (after MEMORY PURGE) every half second over one
retention once the horizon is reached (two retentions after the first fire) and over the
last retention; prints the medians of DBSIZE and used_memory, their ratio end / horizon, and
the key families with the most keys at the end.

    .venv/bin/python bench/retention_soak.py [DURATION_S] [RETENTION_S] [SCHEDULES]
                                                        (default 240 10 5)
"""

from __future__ import annotations

import asyncio
import logging
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from campaign_common.localstack.embedded import EmbeddedStack
from tests.retention_soak import soak


async def main(duration_s: float, retention_s: int, schedules: int) -> None:
    stack = EmbeddedStack(lock_masters=3).start()
    try:
        result = await soak(
            stack.state.url,
            stack.lock_urls,
            retention_s=retention_s,
            duration_s=duration_s,
            schedules=schedules,
        )
    finally:
        stack.stop()
    print(f"## Retention soak ({duration_s:g} s, retention {retention_s} s, "
          f"{schedules} schedules every second)\n")  # fmt: skip
    print(f"machine: {platform.machine()}, {platform.python_version()}\n")
    print("| | at the horizon | at the end | end / horizon |")
    print("|---|---|---|---|")
    keys = (result.horizon_keys, result.end_keys)
    memory = (result.horizon_memory, result.end_memory)
    print(f"| keys (DBSIZE) | {keys[0]:.0f} | {keys[1]:.0f} | {keys[1] / keys[0]:.3f} |")
    print(f"| used_memory (bytes) | {memory[0]:.0f} | {memory[1]:.0f} | "
          f"{memory[1] / memory[0]:.3f} |")  # fmt: skip
    print(f"\nrun records alive at the end: {result.runs_succeeded}")
    top = result.end[-1].families.most_common(12)
    print("key families at the end: " + ", ".join(f"{name} {count}" for name, count in top))


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    args = [float(arg) for arg in sys.argv[1:]]
    asyncio.run(
        main(
            args[0] if args else 240.0,
            int(args[1]) if len(args) > 1 else 10,
            int(args[2]) if len(args) > 2 else 5,
        )
    )
