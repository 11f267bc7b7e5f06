"""The retry book (backoff of entries left pending) and the resolution of run limits."""

from __future__ import annotations

from campaign_common.runs.limits import Overlap, RunLimits
from scraper_svc.limits import LimitDefaults, missed_start_deadline, resolve
from scraper_svc.model import RunRequest
from scraper_svc.retries import RetryBook, stream_order


def _request(entry_id: str) -> RunRequest:
    return RunRequest(entry_id, f"run-{entry_id}", "s", "c", 1, (), ())


def test_retry_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    book = RetryBook(base_s=1.0, max_s=5.0)
    request = _request("5-0")
    delays = []
    for _ in range(5):
        delays.append(book.schedule(request, now=0.0))
        assert book.take_due(now=100.0, limit=10) == [request]
    bounds = [(0.5, 1.0), (1.0, 2.0), (2.0, 4.0), (2.5, 5.0), (2.5, 5.0)]
    assert all(low <= delay <= high for delay, (low, high) in zip(delays, bounds, strict=True))
    book.done("5-0")
    assert len(book) == 0 and book.next_due() is None


def test_retry_take_due_returns_due_entries_in_stream_order_once() -> None:
    book = RetryBook(base_s=1.0, max_s=1.0)
    for entry_id in ("10-0", "9-5", "9-10"):
        book.schedule(_request(entry_id), now=0.0)
    due = book.take_due(now=1.0, limit=2)
    assert [request.entry_id for request in due] == ["9-5", "9-10"]
    assert [request.entry_id for request in book.take_due(now=1.0, limit=5)] == ["10-0"]
    assert book.take_due(now=1.0, limit=5) == []  # running now: not due until scheduled again
    assert book.take_due(now=0.1, limit=5) == [] and len(book) == 3
    assert stream_order("9-10") > stream_order("9-5")


def test_limits_schedule_values_override_defaults_and_zero_means_default() -> None:
    defaults = LimitDefaults(start_deadline_s=30, run_timeout_s=60, max_pages=10)
    resolved = resolve(RunLimits(overlap=Overlap.BUFFER_ONE, max_pages=3), defaults)
    assert resolved.overlap is Overlap.BUFFER_ONE
    assert (resolved.max_pages, resolved.run_timeout_s, resolved.start_deadline_s) == (3, 60, 30)
    assert not resolved.rate_limited
    assert RunLimits(max_runs_per_window=2, window_s=60).rate_limited


def test_limits_start_deadline_counts_from_the_nominal_time() -> None:
    limits = RunLimits(start_deadline_s=5)
    assert not missed_start_deadline(limits, scheduled_for_ms=10_000, now_ms=15_000)
    assert missed_start_deadline(limits, scheduled_for_ms=10_000, now_ms=15_001)
    assert not missed_start_deadline(RunLimits(), scheduled_for_ms=10_000, now_ms=99_000)
