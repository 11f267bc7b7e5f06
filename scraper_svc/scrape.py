"""One run's scrape: fetch its URLs in order within the run's budgets and the hosts' limits.

Budgets are per run (`scraper_svc.limits`): URLs beyond ``max_pages`` are not fetched, and
the body bytes of all pages together may not pass ``max_bytes`` (the page that would pass it
is aborted as soon as the excess arrives, and no further URL is fetched). Either ends the run
FAILED with the budget named first in its error. Every request also passes the worker's
`HostGate` (per-host concurrency and delay).

The scrape fills a `ScrapeOutcome` the caller owns, so the pages fetched so far survive when
the caller's run timeout cancels the scrape half-way. The outcome also says whether a retry
could help: an invalid selector, a 4xx answer other than 408/429, a target the SSRF guard
refuses, a response over the size cap and an exhausted budget fail the same way every time
(``permanent``), as does a URL that cannot be fetched at all (malformed, with a control
character); network errors, timeouts, 408, 429 and 5xx answers may pass. Any other exception
of a fetch or an extraction ends that URL with its type and message, never the worker (the
message without addresses the client did not give; the log has it whole).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from campaign_common.runs.limits import RunLimits
from scraper_svc.error_text import url_hosts, withhold_addresses
from scraper_svc.errors import (
    ByteBudgetExceeded,
    ExtractError,
    FetchError,
    ResponseTooLarge,
    TargetRefused,
)
from scraper_svc.extract import Fields, extract_fields, no_fields
from scraper_svc.fetch_telemetry import without_query
from scraper_svc.fetcher import Fetcher, Page
from scraper_svc.model import PageResult, RunRequest
from scraper_svc.politeness import HostGate

log = logging.getLogger(__name__)


@dataclass
class ScrapeOutcome:
    """What a scrape produced so far: pages, per-URL errors, and a budget that ran out."""

    pages: list[PageResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    budget_error: str = ""
    bytes_read: int = 0
    # Some error is one that retrying the run cannot fix.
    permanent: bool = False

    def all_errors(self) -> list[str]:
        return [self.budget_error, *self.errors] if self.budget_error else list(self.errors)

    def add_error(self, message: str, *, retryable: bool) -> None:
        self.errors.append(message)
        self.permanent = self.permanent or not retryable

    def exceed_budget(self, message: str) -> None:
        self.budget_error = message
        self.permanent = True


def _nothing() -> None:
    return None


# Errors a URL raises every time, whatever the network does (a malformed URL, a control
# character, a host name that cannot be encoded): retrying cannot help.
_INPUT_ERRORS = (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError, UnicodeError)


# Parsing a page this small takes well under a millisecond: a thread hop would cost more than
# it keeps off the event loop. Larger pages are parsed in a worker thread.
INLINE_PARSE_MAX_CHARS = 64 * 1024


async def _extract_fields(text: str, selectors: tuple[tuple[str, str], ...]) -> Fields:
    if len(text) <= INLINE_PARSE_MAX_CHARS:
        return extract_fields(text, selectors)
    return await asyncio.to_thread(extract_fields, text, selectors)


def retryable_status(status_code: int) -> bool:
    """Whether an HTTP error answer may change on a later attempt (408, 429 and 5xx)."""
    return status_code in (408, 429) or status_code >= 500


class Scraper:
    def __init__(self, fetcher: Fetcher, gate: HostGate) -> None:
        self._fetcher = fetcher
        self._gate = gate

    async def scrape(
        self,
        request: RunRequest,
        limits: RunLimits,
        outcome: ScrapeOutcome,
        before_fetch: Callable[[], None] = _nothing,
    ) -> None:
        """Fetch and extract into ``outcome``; ``before_fetch`` runs before each request and
        may raise to stop the scrape (a lost campaign lease)."""
        urls = request.urls
        if 0 < limits.max_pages < len(urls):
            outcome.exceed_budget(
                f"page budget exceeded: {len(urls)} URLs, at most {limits.max_pages} pages "
                f"per run (max_pages); the last {len(urls) - limits.max_pages} were not fetched"
            )
            urls = urls[: limits.max_pages]
        for url in urls:
            before_fetch()
            try:
                page = await self._fetch(url, limits, outcome)
            except ByteBudgetExceeded as exc:
                outcome.exceed_budget(
                    f"byte budget exceeded: more than {limits.max_bytes} bytes per run "
                    f"(max_bytes); stopped at {exc}"
                )
                return
            if page is not None:
                await self._extract(request, page, outcome)

    async def _fetch(self, url: str, limits: RunLimits, outcome: ScrapeOutcome) -> Page | None:
        """The page, or None after recording why not; `ByteBudgetExceeded` propagates."""
        budget = limits.max_bytes - outcome.bytes_read if limits.max_bytes else None
        delay_s = limits.per_host_delay_ms / 1000
        try:
            async with self._gate.request(
                url, concurrency=limits.per_host_concurrency, delay_s=delay_s
            ):
                page = await self._fetcher.fetch(url, byte_budget=budget)
        except ByteBudgetExceeded:
            raise
        except FetchError as exc:
            permanent = isinstance(exc, TargetRefused | ResponseTooLarge)
            outcome.add_error(str(exc), retryable=not permanent)
            return None
        except Exception as exc:  # anything else still ends this URL with a reason
            log.warning("GET %s raised %s: %s", without_query(url), type(exc).__name__, exc)
            outcome.add_error(
                withhold_addresses(f"GET {url!r}: {type(exc).__name__}: {exc}", url_hosts([url])),
                retryable=not isinstance(exc, _INPUT_ERRORS),
            )
            return None
        outcome.bytes_read += page.size
        return page

    async def _extract(self, request: RunRequest, page: Page, outcome: ScrapeOutcome) -> None:
        fields = no_fields(request.selectors)
        if page.status_code >= 400:
            status = page.status_code
            outcome.add_error(f"GET {page.url}: HTTP {status}", retryable=retryable_status(status))
        else:
            try:
                fields = await _extract_fields(page.text, request.selectors)
            except ExtractError as exc:
                outcome.add_error(f"{page.url}: {exc}", retryable=False)
            except Exception as exc:  # the same page and selectors fail the same way again
                outcome.add_error(f"{page.url}: {type(exc).__name__}: {exc}", retryable=False)
        outcome.pages.append(PageResult(page.url, page.status_code, fields, page.fetched_at_ms))
