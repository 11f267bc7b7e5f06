"""One run's lifecycle: lock the campaign, scrape its URLs, record the outcome, ack, release.

Domain types (`RunRequest`, `PageResult`) live here; Redis and protobuf stay behind the
`RunStore` port that `scraper_svc.store` implements.

Timeline of one run, and why it is correct:

    is_finished? ─ yes ─> XACK (a redelivered entry whose outcome is already recorded)
    lock(campaign) ─ held ─> RunSkipped "overlap" ─> XACK
    RunStarted ─> fetch + extract each URL ─> results ─> RunSucceeded | RunFailed ─> XACK
                  └── under a deadline inside the lock's validity ──┘
    release (finally: also after errors and cancellation)

- Only the lock holder writes RunStarted, results and the outcome, and the scrape is bounded
  by the lock's validity minus a margin for those writes, so two runs of one campaign never
  overlap even when pages are slow (the basic Redlock neither extends nor fences).
- XACK comes after the outcome is recorded: a crash before it leaves the entry pending, the
  run is delivered again and runs again (at least once); the `is_finished` check turns a
  redelivery after the outcome was recorded into a plain XACK.
- Errors of the run itself (a URL answering >= 400, a failed fetch, the lease running out)
  end the run FAILED; errors of the infrastructure (state Redis down) propagate, so the entry
  stays pending and is retried, never acked as if it had run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from campaign_common.redlock import Lock
from scraper_svc.errors import ExtractError, FetchError
from scraper_svc.extract import Fields, extract_fields, no_fields
from scraper_svc.fetcher import Fetcher

log = logging.getLogger(__name__)

OVERLAP = "overlap"
# Share of the lock TTL kept free after the scrape for writing results and the outcome.
WRITE_MARGIN = 0.1
MAX_REPORTED_ERRORS = 3


@dataclass(frozen=True)
class RunRequest:
    """A RunRequested entry of the runs stream, as the domain sees it."""

    entry_id: str
    run_id: str
    schedule_id: str
    campaign_id: str
    attempt: int
    urls: tuple[str, ...]
    selectors: tuple[tuple[str, str], ...]
    traceparent: str = ""
    tracestate: str = ""


@dataclass(frozen=True)
class PageResult:
    """What one URL of a run yielded; ``fields`` are all None for an error status."""

    url: str
    status_code: int
    fields: Fields
    fetched_at_ms: int


class RunStore(Protocol):
    async def is_finished(self, run: RunRequest) -> bool: ...
    async def lock_campaign(self, campaign_id: str) -> Lock | None: ...
    async def unlock(self, lock: Lock) -> None: ...
    async def record_started(self, run: RunRequest, worker: str) -> None: ...
    async def record_results(self, run: RunRequest, pages: Sequence[PageResult]) -> None: ...
    async def record_succeeded(self, run: RunRequest, pages: int) -> None: ...
    async def record_failed(self, run: RunRequest, error: str) -> None: ...
    async def record_skipped(self, run: RunRequest, reason: str) -> None: ...
    async def ack(self, entry_id: str) -> None: ...


class RunRunner:
    def __init__(self, store: RunStore, fetcher: Fetcher, *, worker: str, lock_ttl_ms: int):
        self._store = store
        self._fetcher = fetcher
        self._worker = worker
        self._write_margin_s = lock_ttl_ms * WRITE_MARGIN / 1000

    async def run(self, request: RunRequest) -> None:
        """Process one run end to end (see the module docstring for the timeline)."""
        if await self._store.is_finished(request):
            log.info("run %s already finished; acking its redelivered entry", request.run_id)
            await self._store.ack(request.entry_id)
            return
        lock = await self._store.lock_campaign(request.campaign_id)
        if lock is None:
            log.info("run %s skipped: campaign %s is running", request.run_id, request.campaign_id)
            await self._store.record_skipped(request, OVERLAP)
            await self._store.ack(request.entry_id)
            return
        try:
            await self._run_locked(request, lock)
            await self._store.ack(request.entry_id)
        finally:
            await self._store.unlock(lock)

    async def _run_locked(self, request: RunRequest, lock: Lock) -> None:
        await self._store.record_started(request, self._worker)
        pages, errors = await self._scrape(request, lock)
        await self._store.record_results(request, pages)
        if errors:
            error = _summary(errors)
            log.info("run %s failed: %s", request.run_id, error)
            await self._store.record_failed(request, error)
        else:
            log.info("run %s succeeded", request.run_id, extra={"pages": len(pages)})
            await self._store.record_succeeded(request, len(pages))

    async def _scrape(self, request: RunRequest, lock: Lock) -> tuple[list[PageResult], list[str]]:
        """Fetch the URLs in order within the lease; results so far survive a timeout."""
        pages: list[PageResult] = []
        errors: list[str] = []
        started = time.monotonic()
        try:
            async with asyncio.timeout(lock.remaining_s() - self._write_margin_s):
                for url in request.urls:
                    await self._scrape_url(request, url, pages, errors)
        except TimeoutError:
            errors.append(
                f"stopped after {time.monotonic() - started:.1f}s: the run would outlive its "
                "campaign lock (raise SCRAPER_LOCK_TTL_MS for longer runs)"
            )
        return pages, errors

    async def _scrape_url(
        self, request: RunRequest, url: str, pages: list[PageResult], errors: list[str]
    ) -> None:
        try:
            page = await self._fetcher.fetch(url)
        except FetchError as exc:
            errors.append(str(exc))
            return
        fields = no_fields(request.selectors)
        if page.status_code >= 400:
            errors.append(f"GET {url}: HTTP {page.status_code}")
        else:
            try:
                fields = await asyncio.to_thread(extract_fields, page.text, request.selectors)
            except ExtractError as exc:
                errors.append(f"{url}: {exc}")
        pages.append(PageResult(url, page.status_code, fields, page.fetched_at_ms))


def _summary(errors: list[str]) -> str:
    shown = "; ".join(errors[:MAX_REPORTED_ERRORS])
    more = len(errors) - MAX_REPORTED_ERRORS
    return f"{shown} (and {more} more)" if more > 0 else shown
