"""Webhook notifier: POSTs alert events as JSON to a configured URL, never blocking callers.

`notify` only enqueues (a bounded queue; when it is full the oldest alert is dropped with a
warning). One background task delivers in order, retrying each alert with exponential backoff
and jitter on network errors, 429 and 5xx, up to ``max_attempts``; other 4xx answers are not
retried (the receiver refuses the alert). `stop` waits for the queue to drain within its
grace period, then cancels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WebhookSettings:
    url: str
    timeout_s: float = 5.0
    max_attempts: int = 5
    initial_delay_s: float = 0.5
    max_delay_s: float = 30.0
    queue_size: int = 1000


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


class WebhookNotifier:
    def __init__(self, settings: WebhookSettings) -> None:
        self._settings = settings
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=settings.queue_size)
        self._client: httpx.AsyncClient | None = None
        self._worker: asyncio.Task[None] | None = None
        self.delivered = 0
        self.dropped = 0

    def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self._settings.timeout_s)
        self._worker = asyncio.create_task(self._deliver_forever(), name="webhook-notifier")

    def notify(self, alert: dict[str, Any]) -> None:
        """Queue ``alert`` (a JSON-able dict) for delivery; returns at once."""
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
            log.warning("webhook queue full: dropped the oldest alert")
        self._queue.put_nowait(alert)

    async def stop(self, grace_s: float = 5.0) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), grace_s)
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._client is not None:
            await self._client.aclose()

    async def _deliver_forever(self) -> None:
        while True:
            alert = await self._queue.get()
            try:
                await self._deliver(alert)
            finally:
                self._queue.task_done()

    async def _deliver(self, alert: dict[str, Any]) -> None:
        assert self._client is not None
        s = self._settings
        delay_s = s.initial_delay_s
        for attempt in range(1, s.max_attempts + 1):
            try:
                response = await self._client.post(s.url, json=alert)
            except httpx.HTTPError as exc:
                problem = repr(exc)
            else:
                if response.status_code < 400:
                    self.delivered += 1
                    return
                problem = f"HTTP {response.status_code}"
                if not _retryable(response.status_code):
                    break
            if attempt < s.max_attempts:
                log.warning("webhook attempt %d failed (%s); retrying", attempt, problem)
                await asyncio.sleep(delay_s * random.uniform(0.5, 1.5))  # backoff with jitter
                delay_s = min(delay_s * 2, s.max_delay_s)
        log.error("webhook alert %s not delivered: %s", alert.get("event"), problem)
