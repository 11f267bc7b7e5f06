"""One run's lifecycle: limits, campaign lock, scrape, checked writes of the outcome, ack.

Redis and protobuf stay behind the `RunStore` port that `scraper_svc.store` implements; the
domain types are in `scraper_svc.model`.

Timeline of one run, and why it is correct:

    look up (one round trip: the attempt's state, the campaign's fence floor)
    finished? ─ yes ─> ack (a redelivered entry whose outcome is already recorded)
    delivered more than max_deliveries times? ─ yes ─> DEAD_LETTERED (+ ack, one script)
    start deadline passed? ─ yes ─> SKIPPED "missed start deadline" (+ ack, one script)
    overlap policy (scraper_svc.overlap) ─ skip ─> SKIPPED "overlap" (+ ack, one script)
       │    ├ a taken-over entry whose attempt shows RUNNING ─> RETRY_SCHEDULED, RetryLater
       │    └ lock quorum unavailable ─> RETRY_SCHEDULED ─> RetryLater (entry not acked)
       │ campaign lock held and auto-extended; its fence F (0 under ALLOW_ALL)
       ├ cluster slot (scraper_svc.semaphore) ─ none in time ─> RETRY_SCHEDULED ─> RetryLater
       ├ start deadline passed while waiting? ─> SKIPPED "missed start deadline" (F)
       ├ the campaign's rate window is full? ─> SKIPPED "rate limit" (F)
       ├ RunStarted (F) ─> scrape within the budgets, under the run timeout, the lease checked
       │    before every fetch ─> results + SUCCEEDED + ack (F, one script)
       │                        | results (F) ─> failure (F), see below
       └ release the slot, then the lock (also after errors and cancellation)
    lease lost (extension failed, ran out before a fetch) ─> body cancelled ─> stop: nothing
       written, RetryLater counted as a delivery (entry not acked)
    lease cap reached (the run took longer than lock_max_lease_s) ─> body cancelled ─>
       failure "lease lost: maximum lease time ..." (F), see below
    a write refused (campaign_common.runs.log.WriteRefused), nothing written, then:
       EntryLost (another worker owns the entry) ─> stop; the entry is its business now
       Fenced (a newer lock holder wrote) ─> stop; RetryLater counted as a delivery
       AttemptClosed (the attempt has its outcome) ─> ack (if still ours), stop
    every outcome acks its entry in its own script (only while this worker owns the entry)

    failure ─ permanent (invalid selector, 4xx but 408/429, refused target, budget, a URL
              that can never be fetched) ─> FAILED + ack (one script)
            ─ retryable, attempts left ─> RETRY_SCHEDULED + next attempt in the delay queue
                                          + ack (one script)
            ─ retryable, last attempt ─> DEAD_LETTERED + ack (one script)

- Mutual exclusion: runs of one campaign (SKIP, BUFFER_ONE) execute under the campaign's
  Redlock, kept alive for the whole run by auto-extension. A holder that stalls (GC, SIGSTOP)
  past its lease can still wake up: before each fetch it checks its lease on its own clock,
  and every write carries the lease's fencing token, which the state Redis refuses once a
  newer holder has written, in the same script as the write.
- One outcome per attempt, whatever fails: every write of a run (start, results, outcome,
  retry, dead letter, ack) is checked in its script against the entry's owner, the fence and
  the attempt's rank (`campaign_common.runs.log`), and a worker that lost its lease or its
  entry writes nothing but a log line. So a worker that was frozen, or cut off from the state
  Redis while another took its run over, can never add a second outcome or ack the run the
  other worker now owns.
- RunStarted's ``worker`` field reads ``<worker> fence=<F>``, so the run events show which
  lease each execution held (and in which order the leases were issued).
- The ack is part of the script that records the outcome: an entry is never acked without
  its outcome, and never left pending with one (a crash before that script leaves the entry
  pending and the run runs again, at least once); the finished check turns a redelivery of
  an entry whose attempt already has its outcome into a plain ack. A rate window admission
  is idempotent per run id.
- Errors of the run itself (HTTP errors, budgets, timeout, any other exception of the scrape)
  end the attempt as a failure, retried per the schedule's retry policy as a new attempt
  (same run id, attempt + 1); reasons outside it (lock quorum, cluster slots) leave the same
  attempt RETRY_SCHEDULED and pending, and errors of the state Redis propagate; in both cases
  the consumer runs the entry again after a backoff, never acks it as if it had run.
- An entry delivered again and again (its workers keep dying mid-run, its lease keeps being
  lost, or it keeps raising) is dead-lettered once its deliveries pass ``max_deliveries``,
  with the last error the run recorded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Protocol

from opentelemetry import trace
from opentelemetry.trace import Span

from campaign_common.observability.telemetry import mark_error, tracer
from campaign_common.redlock.errors import LeaseCapReached, LeaseLost, QuorumUnavailable
from campaign_common.runs.limits import RunLimits
from campaign_common.runs.writer import AttemptClosed, EntryLost, Fenced, WriteRefused
from campaign_common.timeutil import now_ms
from scraper_svc import metrics
from scraper_svc.error_text import url_hosts, withhold_addresses
from scraper_svc.errors import RetryLater
from scraper_svc.limits import (
    CLUSTER_LIMIT,
    FENCED,
    LEASE_LOST,
    LOCK_QUORUM_UNAVAILABLE,
    MISSED_START_DEADLINE,
    PREVIOUS_WORKER_HOLDS_LOCK,
    RATE_LIMIT,
    TIMEOUT,
    LimitDefaults,
    missed_start_deadline,
    resolve,
)
from scraper_svc.model import PageResult, RunLookup, RunRequest
from scraper_svc.overlap import CampaignGuard, Hold, Overlapped
from scraper_svc.scrape import ScrapeOutcome, Scraper
from scraper_svc.semaphore import ClusterSemaphore, NoSlot

log = logging.getLogger(__name__)
_tracer = tracer(__name__)

MAX_REPORTED_ERRORS = 3


class RunStore(Protocol):
    async def look_up(self, run: RunRequest) -> RunLookup: ...
    async def admit_to_window(self, run: RunRequest, max_runs: int, window_s: int) -> bool: ...
    async def record_started(self, run: RunRequest, worker: str, *, fence: int = 0) -> None: ...
    async def record_results(
        self, run: RunRequest, pages: Sequence[PageResult], *, fence: int = 0
    ) -> None: ...
    async def record_succeeded(
        self, run: RunRequest, pages: Sequence[PageResult], *, fence: int = 0
    ) -> None: ...
    async def record_failed(self, run: RunRequest, error: str, *, fence: int = 0) -> None: ...
    async def record_skipped(self, run: RunRequest, reason: str, *, fence: int = 0) -> None: ...
    async def record_retry_scheduled(self, run: RunRequest, reason: str) -> None: ...
    async def schedule_retry(
        self, run: RunRequest, reason: str, due_ms: int, *, fence: int = 0
    ) -> None: ...
    async def dead_letter(self, run: RunRequest, error: str, *, fence: int = 0) -> str: ...
    async def last_error(self, run: RunRequest) -> str: ...
    async def is_running(self, run: RunRequest) -> bool: ...
    async def ack(self, entry_id: str, partition: int) -> bool: ...


def worker_label(worker: str, fence: int) -> str:
    """RunStarted's ``worker``: the worker's name and, under a campaign lock, its fence."""
    return f"{worker} fence={fence}" if fence else worker


class RunRunner:
    def __init__(
        self,
        store: RunStore,
        guard: CampaignGuard,
        slots: ClusterSemaphore,
        scraper: Scraper,
        *,
        worker: str,
        defaults: LimitDefaults,
        max_deliveries: int = 5,
    ) -> None:
        self._store = store
        self._guard = guard
        self._slots = slots
        self._scraper = scraper
        self._worker = worker
        self._defaults = defaults
        self._max_deliveries = max_deliveries

    async def run(self, request: RunRequest) -> None:
        """Process one run end to end (see the module docstring for the timeline).

        Raises `RetryLater` when the run must run again later (its entry is not acked).
        """
        try:
            await self._run_entry(request)
        except EntryLost as exc:
            log.warning("run %s stops: %s", request.run_id, exc)
        except AttemptClosed as exc:
            log.warning("run %s stops: %s", request.run_id, exc)
            await self._store.ack(request.entry_id, request.partition)
        except Fenced as exc:
            log.warning("run %s stops: %s", request.run_id, exc)
            metrics.LOCK_FAILURE_REASONS["fenced"].inc()
            raise RetryLater(FENCED, redelivery=True) from exc

    async def _run_entry(self, request: RunRequest) -> None:
        lookup = await self._store.look_up(request)
        if lookup.finished:
            log.info("run %s already finished; acking its redelivered entry", request.run_id)
            await self._store.ack(request.entry_id, request.partition)
            return
        if request.deliveries > self._max_deliveries:
            await self._dead_letter_redelivered(request)
            return
        limits = resolve(request.limits, self._defaults)
        if missed_start_deadline(limits, request.scheduled_for_ms, now_ms()):
            await self._skip(request, MISSED_START_DEADLINE)
        else:
            await self._run_guarded(request, limits, lookup.fence_floor)

    async def _run_guarded(self, request: RunRequest, limits: RunLimits, fence_floor: int) -> None:
        fence = 0
        try:
            async with self._guard.hold(request, limits.overlap, fence_floor) as hold:
                fence = hold.fence
                await self._run_fenced(request, limits, hold)
        except LeaseCapReached as exc:
            # The run itself took too long; its lease was valid up to here, so its token may
            # still record the failure (a newer holder's write would fence it off).
            log.warning("run %s reached the lease cap: %s", request.run_id, exc.reason)
            metrics.LOCK_FAILURE_REASONS["lease_lost"].inc()
            await self._fail(request, f"{LEASE_LOST}: {exc.reason}", retryable=True, fence=fence)
        except Overlapped as exc:
            metrics.LOCK_FAILURE_REASONS["held"].inc()
            if request.deliveries > 1 and await self._store.is_running(request):
                # Taken over while its previous worker may still run it (that worker was cut
                # off from the state Redis, not dead): wait for it, never record a second
                # outcome. Once its lock expires, the retry runs the attempt here.
                await self._retry_later(request, PREVIOUS_WORKER_HOLDS_LOCK)
            log.info("run %s skipped: %s", request.run_id, exc)
            await self._skip(request, str(exc))
        except LeaseLost as exc:
            # Another worker may run the campaign now: stop, write nothing, run it again later
            # if the entry is still this worker's (it counts as a delivery).
            log.warning(
                "run %s lost its campaign lock (%s); it stops without writing",
                request.run_id,
                exc.reason,
            )
            metrics.LOCK_FAILURE_REASONS["lease_lost"].inc()
            raise RetryLater(f"{LEASE_LOST}: {exc.reason}", redelivery=True) from exc
        except QuorumUnavailable as exc:
            metrics.LOCK_FAILURE_REASONS["quorum_unavailable"].inc()
            detail = ", ".join(exc.nodes) or exc.reason or str(exc)
            await self._retry_later(request, f"{LOCK_QUORUM_UNAVAILABLE}: {detail}")

    async def _run_fenced(self, request: RunRequest, limits: RunLimits, hold: Hold) -> None:
        holder = f"{self._worker}/{request.run_id}/{request.entry_id}"
        try:
            async with self._slots.slot(holder):
                await self._execute(request, limits, hold)
        except NoSlot as exc:
            await self._retry_later(request, f"{CLUSTER_LIMIT}: {exc}")

    async def _retry_later(self, request: RunRequest, reason: str) -> None:
        log.warning("run %s will be retried: %s", request.run_id, reason)
        metrics.RUN_OUTCOMES["deferred"].inc()
        await self._store.record_retry_scheduled(request, reason)
        raise RetryLater(reason)

    async def _execute(self, request: RunRequest, limits: RunLimits, hold: Hold) -> None:
        fence = hold.fence
        if missed_start_deadline(limits, request.scheduled_for_ms, now_ms()):
            await self._skip(request, MISSED_START_DEADLINE, fence=fence)
            return
        if limits.rate_limited and not await self._store.admit_to_window(
            request, limits.max_runs_per_window, limits.window_s
        ):
            log.info(
                "run %s skipped: campaign %s over its rate", request.run_id, request.campaign_id
            )
            await self._skip(request, RATE_LIMIT, fence=fence)
            return
        await self._store.record_started(request, worker_label(self._worker, fence), fence=fence)
        started = time.monotonic()
        outcome = ScrapeOutcome()
        errors = await self._scrape(request, limits, hold, outcome)
        metrics.RUN_DURATION.observe(time.monotonic() - started)
        process = trace.get_current_span()  # the run's status goes there, not on the write
        if not errors:
            with _tracer.start_as_current_span(
                "record outcome", attributes={"pages": len(outcome.pages)}
            ):  # results, outcome and ack: one script
                await self._store.record_succeeded(request, outcome.pages, fence=fence)
            log.info("run %s succeeded", request.run_id, extra={"pages": len(outcome.pages)})
            metrics.RUN_OUTCOMES["succeeded"].inc()
            return
        with _tracer.start_as_current_span(
            "write results", attributes={"pages": len(outcome.pages)}
        ):
            await self._store.record_results(request, outcome.pages, fence=fence)
        with _tracer.start_as_current_span("record outcome"):
            log.info("run %s attempt %d failed: %s", request.run_id, request.attempt, errors[0])
            retryable = not outcome.permanent
            await self._fail(
                request, _summary(errors), retryable=retryable, fence=fence, span=process
            )

    async def _scrape(
        self, request: RunRequest, limits: RunLimits, hold: Hold, outcome: ScrapeOutcome
    ) -> list[str]:
        """Scrape within the run's timeout; the errors that end the attempt (none: success)."""
        try:
            async with asyncio.timeout(limits.run_timeout_s or None):
                await self._scraper.scrape(request, limits, outcome, hold.check)
            return outcome.all_errors()
        except TimeoutError:
            return [TIMEOUT]
        except (LeaseLost, WriteRefused):
            raise
        except Exception as exc:  # a bug or input nobody foresaw still ends the attempt
            log.exception("run %s: the scrape raised", request.run_id)
            failed = f"scrape failed: {type(exc).__name__}: {exc}"
            return [withhold_addresses(failed, url_hosts(request.urls)), *outcome.all_errors()]

    async def _skip(self, request: RunRequest, reason: str, *, fence: int = 0) -> None:
        await self._store.record_skipped(request, reason, fence=fence)
        metrics.RUN_OUTCOMES["skipped"].inc()

    async def _fail(
        self,
        request: RunRequest,
        error: str,
        *,
        retryable: bool,
        fence: int = 0,
        span: Span | None = None,
    ) -> None:
        """End a failed attempt: FAILED, another attempt later, or the dead-letter stream;
        ``span`` (default: the current one) is the run's span that gets the error status."""
        span = span or trace.get_current_span()
        # The next attempt and the dead letter carry the run span's context: later attempts
        # link to it (not to the span of this write).
        with trace.use_span(span, end_on_exit=False):
            await self._end_failed(request, error, retryable=retryable, fence=fence, span=span)

    async def _end_failed(
        self, request: RunRequest, error: str, *, retryable: bool, fence: int, span: Span
    ) -> None:
        policy = request.retry
        if not retryable:
            await self._store.record_failed(request, error, fence=fence)
            mark_error(span, "failed", error)
            metrics.RUN_OUTCOMES["failed"].inc()
        elif policy.allows_another(request.attempt):
            delay_s = policy.delay_s(request.attempt)
            await self._store.schedule_retry(
                request, error, now_ms() + round(delay_s * 1000), fence=fence
            )
            log.info(
                "run %s attempt %d of %d failed; next attempt in %.1f s",
                request.run_id,
                request.attempt,
                policy.max_attempts,
                delay_s,
            )
            mark_error(span, "retry_scheduled", error)
            metrics.RUN_OUTCOMES["retry_scheduled"].inc()
        else:
            log.warning("run %s failed its last attempt; dead-lettering it", request.run_id)
            await self._store.dead_letter(request, error, fence=fence)
            mark_error(span, "dead_lettered", error)
            metrics.RUN_OUTCOMES["dead_lettered"].inc()
            metrics.DEAD_LETTER_CAUSES["attempts"].inc()

    async def _dead_letter_redelivered(self, request: RunRequest) -> None:
        last = await self._store.last_error(request)
        error = (
            f"delivered {request.deliveries} times without finishing (more than "
            f"SCRAPER_MAX_DELIVERIES={self._max_deliveries}); last error: "
            f"{last or 'none recorded (its workers stopped mid-run)'}"
        )
        log.warning("run %s dead-lettered: %s", request.run_id, error)
        await self._store.dead_letter(request, error)
        mark_error(trace.get_current_span(), "dead_lettered", error)
        metrics.RUN_OUTCOMES["dead_lettered"].inc()
        metrics.DEAD_LETTER_CAUSES["deliveries"].inc()


def _summary(errors: list[str]) -> str:
    shown = "; ".join(errors[:MAX_REPORTED_ERRORS])
    more = len(errors) - MAX_REPORTED_ERRORS
    return f"{shown} (and {more} more)" if more > 0 else shown
