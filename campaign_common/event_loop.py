"""The event loop a service runs on: uvloop (libuv) by default, the standard asyncio loop
when a service's ``*_UVLOOP=false`` says so.

uvloop cuts the loop's own cost per socket read and write, which dominates a service that
makes many small Redis and HTTP round trips (docs/benchmarks.md, "Run path"). The setting
exists to rule the loop out when chasing a problem.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory(use_uvloop: bool) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """A factory of uvloop loops, or None (asyncio's default loop)."""
    if not use_uvloop:
        return None
    import uvloop

    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], *, use_uvloop: bool) -> T:
    """`asyncio.run` on the chosen loop."""
    with asyncio.Runner(loop_factory=loop_factory(use_uvloop)) as runner:
        return runner.run(main)
