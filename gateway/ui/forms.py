"""HTML forms: reading ``application/x-www-form-urlencoded`` bodies, the schedule form's fields
(`gateway.ui.form_fields`) as the REST document of ``POST /campaign/addScheduledCampaign`` (or
of an update), and field violations placed next to the form field they are about.

Form values are copied into the REST document as typed as they can be (a number field that
does not parse stays text), so the API's own validation, not a second copy of it, judges them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

import grpc
from fastapi import Request

from gateway.errors import FieldViolation, GatewayError
from gateway.ui.form_fields import BY_PATH, FIELDS, FormField

MAX_FORM_BYTES = 64 * 1024
# Violations about these land on the form field: the kind of timing as a whole ("set exactly
# one of ..."), shown above the "When" fields.
GROUP_FIELDS = ("schedule",)
_INDEX = re.compile(r"\[\d+\]")


async def read_form(request: Request) -> dict[str, str]:
    """The urlencoded body as a dict (last value of a repeated name wins)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise GatewayError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"the form is larger than {MAX_FORM_BYTES // 1024} KiB; send less",
        )
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _number(text: str, kind: type[int] | type[float]) -> int | float | str | None:
    text = text.strip()
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        return text  # the API answers with a violation for this field


def _selectors(text: str) -> dict[str, str]:
    """ "name: css selector" per line."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        name, _, selector = line.partition(":")
        if name.strip():
            found[name.strip()] = selector.strip()
    return found


def _value(field: FormField, text: str) -> Any:
    """What a typed value is in the REST document (None: not sent, the API's default)."""
    if field.kind == "lines":
        return [line.strip() for line in text.splitlines() if line.strip()]
    if field.kind == "selectors":
        return _selectors(text)
    if field.kind == "int":
        return _number(text, int)
    if field.kind == "float":
        return _number(text, float)
    return text.strip() or None


def create_document(form: Mapping[str, str]) -> dict[str, Any]:
    """The REST body of a create request from the schedule form's fields."""
    document: dict[str, Any] = {"name": form.get("name", ""), "schedule": {}, "scrape": {}}
    for field in FIELDS:
        if field.path == "name":  # sent as typed, even empty: the API names what is wrong
            continue
        value = _value(field, form.get(field.path, ""))
        if value is None:
            continue
        section, _, name = field.path.rpartition(".")
        (document.setdefault(section, {}) if section else document)[name] = value
    return document


def update_document(form: Mapping[str, str]) -> dict[str, Any]:
    """The REST body of an update (PUT) from the edit form: the create body without the
    campaign id, which an update keeps, and without a request id (updates are checked by
    version instead)."""
    document = create_document(form)
    document.pop("campaignId", None)
    document.pop("requestId", None)
    return document


def _shown(value: Any) -> bool:
    return value is not None and value != 0 and value != "UNSPECIFIED"


def schedule_form(schedule: Mapping[str, Any]) -> dict[str, str]:
    """The edit form's fields prefilled from a schedule's REST document (unset values empty)."""
    form = {"name": schedule["name"], "campaignId": schedule["campaignId"]}
    form["version"] = str(schedule["version"])
    for key, value in schedule["schedule"].items():
        if _shown(value):
            form[f"schedule.{key}"] = str(value)
    form["scrape.urls"] = "\n".join(schedule["scrape"]["urls"])
    selectors = sorted(schedule["scrape"]["selectors"].items())
    form["scrape.selectors"] = "\n".join(f"{name}: {css}" for name, css in selectors)
    for key, value in schedule["limits"].items():
        if _shown(value):
            form[f"limits.{key}"] = str(value)
    for key, value in schedule["retryPolicy"].items():  # effective values; jitter 0 is kept
        form[f"retryPolicy.{key}"] = str(value)
    return form


def form_field(path: str) -> str:
    """The form field a REST field path is about: ``scrape.urls[2]`` -> ``scrape.urls``,
    ``scrape.selectors.price`` -> ``scrape.selectors``; "" when no field shows it (then it is
    shown on top; so are those about a hidden field)."""
    path = _INDEX.sub("", path)
    if path.startswith("scrape.selectors"):
        return "scrape.selectors"
    field = BY_PATH.get(path)
    if (field is not None and field.kind != "hidden") or path in GROUP_FIELDS:
        return path
    return ""


def field_errors(violations: Iterable[FieldViolation]) -> dict[str, list[str]]:
    """Descriptions by form field; those no field shows are under "" (shown on top)."""
    errors: dict[str, list[str]] = {}
    for violation in violations:
        key = form_field(violation.field)
        prefix = "" if key == violation.field else f"{violation.field or 'request'}: "
        errors.setdefault(key, []).append(prefix + violation.description)
    return errors


def errors_of(error: GatewayError) -> dict[str, list[str]]:
    """What to show for a failed create: the violations, or the message on top."""
    errors = field_errors(error.violations)
    if not errors:
        errors[""] = [error.message]
    return errors
