"""The scraper's errors: one root. Messages are what lands in a run's ``error`` field."""

from __future__ import annotations


class ScraperError(Exception):
    """Root of every error the scraper raises on purpose."""


class StartupError(ScraperError):
    """The scraper cannot start (lock masters unreachable, bad settings ...)."""


class FetchError(ScraperError):
    """A URL could not be fetched; the message names the URL and what went wrong."""


class FetchTimeout(FetchError):
    """A fetch did not finish within ``fetch_timeout_s`` (every hop and the body included)."""


class TargetRefused(FetchError):
    """The SSRF guard refused a target (scheme or address); the message names the setting."""


class ResponseTooLarge(FetchError):
    """A response body went past the configured size cap."""


class ExtractError(ScraperError):
    """A selector could not be applied (for example, it is not valid CSS)."""


class ByteBudgetExceeded(FetchError):
    """A body went past what is left of the run's byte budget (``max_bytes``)."""


class RetryLater(ScraperError):
    """The run cannot go on now (lock quorum, cluster slots, a lost lease): its entry stays
    pending and the consumer runs it again after a backoff, if the entry is still its own.

    ``redelivery``: the attempt got under way and was cut short (lease lost, fenced off), so
    running it again counts as a delivery, bounded by the delivery limit like a reclaim.
    """

    def __init__(self, reason: str, *, redelivery: bool = False) -> None:
        super().__init__(reason)
        self.redelivery = redelivery
