"""Schemathesis hooks for ``test_schemathesis``: what JSON Schema cannot say about valid data.

The OpenAPI document states every constraint JSON Schema can express (types, lengths, ranges,
patterns, the zone list, the timing kind as a oneOf), and positive cases drawn from it are
sent as drawn, except for the rules no schema language states, which are applied here to
positive cases only (negative cases go out untouched):

- a cron expression must parse and be able to fire, and a selector must be valid CSS: a drawn
  one is swapped for one of a few valid ones (chosen by the drawn text, so runs repeat);
- times are relative to now: ``runAt`` and ``endTime`` in the future, ``endTime`` after
  ``startTime``, ``runAt`` between them;
- pairs: ``maxRunsPerWindow`` with ``windowSeconds`` (both or neither), ``maxDelaySeconds``
  >= ``initialDelaySeconds`` (their defaults counted), the body's ``requestId`` equal to the
  ``Idempotency-Key`` header;
- a host name is at most 253 characters;
- page tokens and watch positions are opaque (only one the API returned is valid), so a
  positive case does not make one up.
"""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import schemathesis
from schemathesis import GenerationMode

CRONS = ("0 9 * * 1-5", "*/15 * * * *", "@daily", "30 2 * * 0", "0 0 1 * *")
SELECTORS = ("h1", ".price", "a[href]", "#main p", "ul > li")
OPAQUE_QUERY = ("pageToken", "position")


def _pick(options: tuple[str, ...], seed: object) -> str:
    return options[zlib.crc32(repr(seed).encode()) % len(options)]


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _fix_times(spec: dict[str, Any]) -> None:
    now = datetime.now(UTC)
    if "startTime" in spec:
        spec["startTime"] = _iso(now + timedelta(days=1))
    if "endTime" in spec:
        spec["endTime"] = _iso(now + timedelta(days=800))
    if "runAt" in spec:
        spec["runAt"] = _iso(now + timedelta(days=2))


def _fix_schedule(spec: dict[str, Any]) -> None:
    if "cron" in spec:
        cron = _pick(CRONS, spec["cron"])
        seconds = spec.get("cronDialect") == "seconds6" and not cron.startswith("@")
        spec["cron"] = f"0 {cron}" if seconds else cron
    _fix_times(spec)


def _fix_scrape(scrape: dict[str, Any]) -> None:
    urls = scrape.get("urls", [])
    for index, url in enumerate(urls):
        if len(urlsplit(url).hostname or "") > 253:
            urls[index] = "http://example.test/"
    selectors = scrape.get("selectors", {})
    for name, selector in selectors.items():
        selectors[name] = _pick(SELECTORS, selector)


def _fix_pairs(body: dict[str, Any]) -> None:
    limits = body.get("limits") or {}
    runs, window = limits.get("maxRunsPerWindow", 0), limits.get("windowSeconds", 0)
    if bool(runs) != bool(window):
        limits["maxRunsPerWindow"], limits["windowSeconds"] = runs or 1, window or 60
    retry = body.get("retryPolicy")
    if isinstance(retry, dict):  # absent or 0 means the default: 5 s, capped at 300 s
        first = retry.get("initialDelaySeconds") or 5.0
        cap = retry.get("maxDelaySeconds") or 300.0
        if cap < first:
            retry["initialDelaySeconds"], retry["maxDelaySeconds"] = cap, first


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    if case.meta is None or case.meta.generation.mode is not GenerationMode.POSITIVE:
        return case
    for name in OPAQUE_QUERY:
        if case.query:
            case.query.pop(name, None)
    if case.headers:
        case.headers.pop("Last-Event-ID", None)
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("schedule"), dict):
        _fix_schedule(body["schedule"])
        if isinstance(body.get("scrape"), dict):
            _fix_scrape(body["scrape"])
        _fix_pairs(body)
        if case.headers and "Idempotency-Key" in case.headers and "requestId" in body:
            body["requestId"] = case.headers["Idempotency-Key"]
    return case
