"""Politeness towards target hosts: requests in flight per host, and a delay between them.

Scope: one worker process. Every run of this worker shares one `HostGate`, so two campaigns
scraping one host from this worker together stay within the limits; several workers (and
replicas) each keep their own count, so a cluster sends at most ``workers x concurrency``
requests to a host at once. A host is the URL's ``host:port``; redirect hops are counted
against the host of the URL they started from.

Each request passes the gate with the limits of its own run (``concurrency`` requests of this
worker in flight to the host at most, at least ``delay_s`` between the starts of two requests
to it), so a run with strict limits waits for a run with loose ones, never the reverse.

Timeline of one request::

    wait until in-flight(host) < concurrency and now >= last start(host) + delay_s
    in-flight += 1, last start = now  ->  fetch  ->  in-flight -= 1, wake the waiters

Waiting is bounded by the run's timeout (the caller's deadline). Entries of hosts that have
been idle for longer than their delay are dropped, so the table stays small.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

PRUNE_ABOVE = 256


@dataclass
class _Host:
    condition: asyncio.Condition = field(default_factory=asyncio.Condition)
    in_flight: int = 0
    waiting: int = 0
    last_start: float = float("-inf")
    longest_delay_s: float = 0.0

    def idle_since(self, now: float) -> bool:
        return (
            self.in_flight == 0
            and self.waiting == 0
            and now - self.last_start > self.longest_delay_s
        )


def host_of(url: str) -> str:
    """The politeness key of a URL: lower-case ``host:port`` (empty for unparsable URLs)."""
    try:
        return urlsplit(url).netloc.lower()
    except ValueError:
        return ""


class HostGate:
    """Per-host concurrency and delay for the requests of one worker process."""

    def __init__(self) -> None:
        self._hosts: dict[str, _Host] = {}

    @contextlib.asynccontextmanager
    async def request(self, url: str, *, concurrency: int, delay_s: float) -> AsyncIterator[None]:
        """Hold a request slot of the URL's host for the body (see the module docstring)."""
        host = self._entry(host_of(url), delay_s)
        async with host.condition:
            host.waiting += 1
            try:
                await self._wait_turn(host, max(1, concurrency), delay_s)
            finally:
                host.waiting -= 1
            host.in_flight += 1
            host.last_start = time.monotonic()
        try:
            yield
        finally:
            async with host.condition:
                host.in_flight -= 1
                host.condition.notify_all()

    @staticmethod
    async def _wait_turn(host: _Host, concurrency: int, delay_s: float) -> None:
        """Return (holding the condition) once a request may start; called with it held."""
        while True:
            await host.condition.wait_for(lambda: host.in_flight < concurrency)
            wait_s = host.last_start + delay_s - time.monotonic()
            if wait_s <= 0:
                return
            with contextlib.suppress(TimeoutError):  # woken early or not: check again
                await asyncio.wait_for(host.condition.wait(), wait_s)

    def _entry(self, name: str, delay_s: float) -> _Host:
        if len(self._hosts) > PRUNE_ABOVE:
            now = time.monotonic()
            for key in [key for key, host in self._hosts.items() if host.idle_since(now)]:
                del self._hosts[key]
        host = self._hosts.setdefault(name, _Host())
        host.longest_delay_s = max(host.longest_delay_s, delay_s)
        return host
