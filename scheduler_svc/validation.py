"""Validation of commands: every problem becomes a field violation naming the proto field path.

All violations of a request are collected, not just the first, so a caller fixes them at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC
from functools import cache, lru_cache
from zoneinfo import available_timezones

from selectolax.lexbor import LexborHTMLParser, SelectolaxError

from campaign_common import retry_policy
from campaign_common.runs.limits import LIMIT_FIELDS, RunLimits
from scheduler_svc.cron import CronSyntaxError, parse_cron
from scheduler_svc.model import NewSchedule, Scrape, Timing, TimingKind
from scheduler_svc.triggers import build_trigger, next_fire_ms
from scheduler_svc.urls import url_problem

CAMPAIGN_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
MAX_NAME = 200
MAX_URLS = 100
MAX_SELECTORS = 50
MAX_INTERVAL_S = 366 * 24 * 3600
# Jitter and catch-up window (`campaign_common.runs.limits`, 12 h) together stay below the
# runs' dedupe TTL (24 h by default, checked by the settings), so a fire emitted late by one
# replica is still recognised when another emits it.
MAX_JITTER_S = 12 * 3600
MAX_CATCH_UP_WINDOW_S = LIMIT_FIELDS["catch_up_window_seconds"][1]


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


def _check_campaign(campaign_id: str) -> list[FieldViolation]:
    if campaign_id and not CAMPAIGN_ID.fullmatch(campaign_id):
        return [
            FieldViolation(
                "campaign_id",
                "must match [a-z0-9][a-z0-9-]{0,62} (lower-case letters, digits, dashes; "
                "up to 63 characters); leave it empty to have one generated",
            )
        ]
    return []


def _check_name(name: str) -> list[FieldViolation]:
    if not name.strip() or len(name) > MAX_NAME:
        return [FieldViolation("name", f"is required and must be 1-{MAX_NAME} characters")]
    return []


@cache
def iana_zones() -> frozenset[str]:
    """The IANA zone names this build knows (files, never directories such as ``Europe``)."""
    return frozenset(available_timezones())


def check_timezone(name: str) -> list[FieldViolation]:
    if not name or name in iana_zones():
        return []
    return [
        FieldViolation(
            "schedule.timezone",
            f"{name[:64]!r} is not an IANA time zone name (e.g. Europe/Berlin, UTC)",
        )
    ]


def _check_bounds(timing: Timing, now_ms: int) -> list[FieldViolation]:
    if timing.start_ms and timing.end_ms and timing.end_ms <= timing.start_ms:
        return [FieldViolation("schedule.end_time", "must be after schedule.start_time")]
    if timing.end_ms and timing.end_ms <= now_ms:
        return [FieldViolation("schedule.end_time", "is in the past")]
    if timing.kind is TimingKind.RUN_AT and not (
        (timing.start_ms or 0) <= timing.run_at_ms <= (timing.end_ms or timing.run_at_ms)
    ):
        return [FieldViolation("schedule.run_at", "is outside schedule.start_time/end_time")]
    return []


def _check_fires(timing: Timing, now_ms: int) -> list[FieldViolation]:
    """A timing that is valid in itself but leaves no fire between its bounds."""
    if not (timing.start_ms or timing.end_ms) or timing.kind is TimingKind.RUN_AT:
        return []
    trigger = build_trigger(timing, now_ms)
    if next_fire_ms(trigger, after_ms=now_ms) is None:
        return [FieldViolation("schedule", "no fire time falls between start_time and end_time")]
    return []


def _check_timing(timing: Timing | None, now_ms: int, grace_ms: int) -> list[FieldViolation]:
    if timing is None:
        return [FieldViolation("schedule", "set exactly one of cron, interval_seconds or run_at")]
    violations = check_timezone(timing.timezone) + _check_bounds(timing, now_ms)
    if not 0 <= timing.jitter_s <= MAX_JITTER_S:
        violations.append(
            FieldViolation(
                "schedule.jitter_seconds", f"must be between 0 (no jitter) and {MAX_JITTER_S}"
            )
        )
    if timing.kind is TimingKind.CRON:
        try:
            parse_cron(timing.cron, UTC, timing.dialect)
        except CronSyntaxError as exc:
            violations.append(FieldViolation("schedule.cron", f"invalid cron expression: {exc}"))
    elif timing.kind is TimingKind.INTERVAL:
        if not 1 <= timing.interval_s <= MAX_INTERVAL_S:
            violations.append(
                FieldViolation(
                    "schedule.interval_seconds", f"must be between 1 and {MAX_INTERVAL_S}"
                )
            )
    elif timing.run_at_ms < now_ms - grace_ms:
        violations.append(FieldViolation("schedule.run_at", "is in the past"))
    return violations or _check_fires(timing, now_ms)


def _check_url(index: int, url: str) -> list[FieldViolation]:
    problem = url_problem(url)
    return [FieldViolation(f"scrape.urls[{index}]", problem)] if problem else []


def _check_selector(name: str, selector: str) -> list[FieldViolation]:
    if not FIELD_NAME.fullmatch(name):
        return [
            FieldViolation(
                f"scrape.selectors.{name[:64]}",
                "field names are letters, digits, '_' or '-' (1-64, not starting with a digit)",
            )
        ]
    try:
        LexborHTMLParser("<html></html>").css_first(selector)
    except SelectolaxError:
        return [
            FieldViolation(f"scrape.selectors.{name}", f"invalid CSS selector {selector[:100]!r}")
        ]
    return []


def _check_scrape(scrape: Scrape) -> list[FieldViolation]:
    violations: list[FieldViolation] = []
    if not 1 <= len(scrape.urls) <= MAX_URLS:
        violations.append(FieldViolation("scrape.urls", f"give 1-{MAX_URLS} URLs"))
    for index, url in enumerate(scrape.urls):
        violations += _check_url(index, url)
    if len(scrape.selectors) > MAX_SELECTORS:
        violations.append(FieldViolation("scrape.selectors", f"at most {MAX_SELECTORS} selectors"))
    for name, selector in scrape.selectors:
        violations += _check_selector(name, selector)
    return violations


# Limits and retry policies are values a fleet shares a few of: each is judged once.
@lru_cache(maxsize=4096)
def _check_limits(limits: RunLimits) -> tuple[FieldViolation, ...]:
    violations = [
        FieldViolation(f"limits.{name}", f"must be between 0 (no limit) and {maximum}")
        for name, (attribute, maximum) in LIMIT_FIELDS.items()
        if not 0 <= getattr(limits, attribute) <= maximum
    ]
    if bool(limits.max_runs_per_window) != bool(limits.window_s):
        violations.append(
            FieldViolation(
                "limits.window_seconds",
                "a runs-per-window limit needs both the maximum and the window (or neither)",
            )
        )
    return tuple(violations)


@lru_cache(maxsize=4096)
def _check_retry(policy: retry_policy.RetryPolicy) -> tuple[FieldViolation, ...]:
    # The effective policy as a message: every field set, so only real values are judged
    # (a requested 0 already took its default, exactly as `problems` treats it).
    return tuple(
        FieldViolation(f"retry_policy.{name}", description)
        for name, description in retry_policy.problems(retry_policy.to_proto(policy))
    )


def check_new_schedule(command: NewSchedule, now_ms: int, grace_ms: int) -> list[FieldViolation]:
    """Every violation of a create command (empty when valid)."""
    return [
        *_check_campaign(command.campaign_id),
        *_check_name(command.name),
        *_check_timing(command.timing, now_ms, grace_ms),
        *_check_scrape(command.scrape),
        *_check_limits(command.limits),
        *_check_retry(command.retry),
    ]
