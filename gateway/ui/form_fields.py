"""The fields of the schedule form (create and edit): one `FormField` per field of the REST
create document, named by its REST path (``schedule.jitterSeconds``), with its label, hint,
kind and section.

The form's HTML is drawn from `SECTIONS`, its values read back by `gateway.ui.forms`, and
violations are placed next to the field of the same path, so a field added here is shown, sent
and given its errors with no other change. `NOT_OFFERED` names the request fields that are not
typed into the form, with why; a test fails when the API's request models have a field that is
neither here nor there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from campaign_common import retry_policy
from gateway.models import LIMIT_RANGES, MAX_INTERVAL_S, MAX_JITTER_S

Kind = Literal["text", "int", "float", "choice", "lines", "selectors", "hidden"]


@dataclass(frozen=True)
class FormField:
    path: str  # the REST field path, also the form field's name and id
    label: str
    kind: Kind = "text"
    hint: str = ""
    choices: tuple[tuple[str, str], ...] = ()  # (value, label); "" sends nothing: the default


@dataclass(frozen=True)
class Section:
    legend: str
    fields: tuple[FormField, ...]
    folded: bool = False  # shown behind a disclosure unless one of its fields is set or wrong


def _upto(high: float, low: int = 0) -> str:
    """ "0 to 43 200": a range as people read it."""
    return f"{low} to {high:,.0f}".replace(",", " ")


def _limit(name: str, label: str, what: str = "") -> FormField:
    """A whole-number limit (0 or empty: none, or the service's default)."""
    shown = _upto(LIMIT_RANGES[name])
    return FormField(f"limits.{name}", label, "int", f"{what}; {shown}" if what else shown)


WHEN = (
    FormField("schedule.cron", "Cron expression", hint="e.g. 30 8 * * 1-5 (see the dialect)"),
    FormField(
        "schedule.cronDialect",
        "Cron dialect",
        "choice",
        "the same text means different times in each",
        choices=(
            ("", "default: POSIX, 5 fields"),
            ("posix5", "POSIX, 5 fields: minute hour day month weekday (Sunday 0 or 7)"),
            ("seconds6", "6 fields: a second field first, then the 5 POSIX fields"),
        ),
    ),
    FormField("schedule.intervalSeconds", "Every N seconds", "int", _upto(MAX_INTERVAL_S, 1)),
    FormField("schedule.runAt", "Once at", hint="RFC 3339, e.g. 2026-12-01T09:00:00Z"),
    FormField("schedule.timezone", "Time zone", hint="IANA name, e.g. Europe/Berlin"),
    FormField(
        "schedule.jitterSeconds",
        "Jitter (s)",
        "int",
        f"each fire runs a fixed delay in [0, N) s after its time, spreading load; "
        f"{_upto(MAX_JITTER_S)}; empty or 0: none",
    ),
    FormField("schedule.startTime", "Not before", hint="RFC 3339; empty: from now"),
    FormField("schedule.endTime", "Not after", hint="RFC 3339; then the schedule completes"),
)
SCRAPE = (
    FormField("scrape.urls", "URLs", "lines", "one per line"),
    FormField(
        "scrape.selectors",
        "Selectors",
        "selectors",
        "one per line: field name: CSS selector, e.g. title: h1",
    ),
)
LIMITS = (
    FormField(
        "limits.overlap",
        "When a run is still going",
        "choice",
        choices=(
            ("", "default: SKIP"),
            ("SKIP", "SKIP: skip the new run"),
            ("BUFFER_ONE", "BUFFER_ONE: run it after the current one"),
            ("ALLOW_ALL", "ALLOW_ALL: run both"),
        ),
    ),
    _limit("maxTotalRuns", "Stop after N runs", what="then the schedule completes"),
    _limit("pauseAfterFailures", "Pause after N failures in a row"),
    _limit(
        "catchUpWindowSeconds",
        "Catch-up window (s)",
        what="a fire missed while no scheduler ran still runs if at most this late; "
        "empty or 0: the service's default (60 s)",
    ),
)
MORE_LIMITS = (
    _limit("maxRunsPerWindow", "At most N runs", what="per window below (both or neither)"),
    _limit("windowSeconds", "Window (s)", what="with the line above"),
    _limit("startDeadlineSeconds", "Start deadline (s)", what="a run picked up later is skipped"),
    _limit("runTimeoutSeconds", "Run timeout (s)"),
    _limit("maxPages", "Pages per run"),
    _limit("maxBytes", "Bytes per run"),
    _limit("perHostConcurrency", "Fetches at once per host"),
    _limit("perHostDelayMs", "Delay between fetches per host (ms)"),
)
_DELAY = _upto(retry_policy.MAX_DELAY_LIMIT_S)
RETRIES = (
    FormField(
        "retryPolicy.maxAttempts",
        "Attempts per run",
        "int",
        f"the first included; default 3; at most {retry_policy.MAX_ATTEMPTS_LIMIT}",
    ),
    FormField("retryPolicy.initialDelaySeconds", "First retry delay (s)", "float", "default 5"),
    FormField("retryPolicy.maxDelaySeconds", "Longest retry delay (s)", "float", _DELAY),
    FormField("retryPolicy.multiplier", "Delay multiplier", "float", "1 or more; default 2"),
    FormField("retryPolicy.jitter", "Retry jitter (0 to 1)", "float", "default 0.2"),
)
SECTIONS = (
    Section("When (fill in one of cron, interval or once at)", WHEN),
    Section("What to scrape", SCRAPE),
    Section("Limits (optional)", LIMITS),
    Section("More limits (optional)", MORE_LIMITS, folded=True),
    Section("Retries (optional)", RETRIES),
)
NAME = FormField("name", "Name")
CAMPAIGN_ID = FormField(
    "campaignId", "Campaign id", hint="lower-case letters, digits and dashes; generated when empty"
)
# Made when the create form is opened and kept while it is re-shown: sending the same form
# twice (a double click, a reload after a lost answer) creates one schedule.
REQUEST_ID = FormField("requestId", "Request id", "hidden")
FIELDS: tuple[FormField, ...] = (
    NAME,
    CAMPAIGN_ID,
    REQUEST_ID,
    *(field for section in SECTIONS for field in section.fields),
)
BY_PATH = {field.path: field for field in FIELDS}
# Fields of the REST requests the form has no input for, and why.
NOT_OFFERED = {
    "validateOnly": "not typed: the Preview button sends the form with validate_only",
}
