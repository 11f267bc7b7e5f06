"""The schedule form's fields as the REST create document, violations placed at fields, and
the form offering every field of the API's create and update requests."""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from gateway.errors import FieldViolation
from gateway.models import AddScheduledCampaignBody, RunLimitsIn, ScheduleSpecIn, UpdateScheduleBody
from gateway.ui.form_fields import BY_PATH, NOT_OFFERED
from gateway.ui.forms import create_document, field_errors, form_field, update_document


def test_forms_create_document_from_the_fields() -> None:
    form = {
        "name": "Spring leads",
        "campaignId": "",
        "schedule.cron": "",
        "schedule.intervalSeconds": "30",
        "schedule.runAt": "",
        "schedule.timezone": "UTC",
        "scrape.urls": "http://a.example/\r\n\r\nhttp://b.example/x\r\n",
        "scrape.selectors": "title: h1\r\nprice: .price > span\r\n",
        "limits.overlap": "",
        "limits.maxTotalRuns": "",
        "retryPolicy.maxAttempts": "2",
        "retryPolicy.jitter": "0",
    }
    assert create_document(form) == {
        "name": "Spring leads",
        "schedule": {"intervalSeconds": 30, "timezone": "UTC"},
        "scrape": {
            "urls": ["http://a.example/", "http://b.example/x"],
            "selectors": {"title": "h1", "price": ".price > span"},
        },
        "retryPolicy": {"maxAttempts": 2, "jitter": 0.0},
    }


def test_forms_a_number_that_does_not_parse_is_left_for_the_api_to_judge() -> None:
    document = create_document({"name": "x", "schedule.intervalSeconds": "soon"})
    assert document["schedule"] == {"intervalSeconds": "soon"}


def test_forms_violations_land_on_the_field_that_shows_them() -> None:
    assert form_field("scrape.urls[2]") == "scrape.urls"
    assert form_field("scrape.selectors.price") == "scrape.selectors"
    assert form_field("schedule.cron") == "schedule.cron"
    assert form_field("schedule.jitterSeconds") == "schedule.jitterSeconds"
    assert form_field("limits.catchUpWindowSeconds") == "limits.catchUpWindowSeconds"
    assert form_field("schedule") == "schedule", "exactly one kind of timing: above them"
    assert form_field("requestId") == "", "a hidden field's error is shown on top"
    assert form_field("limits.noSuchLimit") == ""
    errors = field_errors(
        [
            FieldViolation("scrape.urls[1]", "must be http(s)"),
            FieldViolation("schedule.jitterSeconds", "must be between 0 and 43200"),
            FieldViolation("requestId", "too long"),
        ]
    )
    assert errors == {
        "scrape.urls": ["scrape.urls[1]: must be http(s)"],
        "schedule.jitterSeconds": ["must be between 0 and 43200"],
        "": ["requestId: too long"],
    }


def test_forms_jitter_dialect_and_catch_up_window_reach_the_document() -> None:
    form = {
        "name": "x",
        "requestId": "r-1",
        "schedule.cron": "30 0 9 * * *",
        "schedule.cronDialect": "seconds6",
        "schedule.jitterSeconds": "600",
        "limits.catchUpWindowSeconds": "120",
        "limits.windowSeconds": "",
    }
    document = create_document(form)
    assert document["requestId"] == "r-1"
    assert document["schedule"] == {
        "cron": "30 0 9 * * *",
        "cronDialect": "seconds6",
        "jitterSeconds": 600,
    }
    assert document["limits"] == {"catchUpWindowSeconds": 120}
    assert "requestId" not in update_document(form), "an update has no request id"


def _request_paths(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    """The REST path of every field of a request model, nested models walked."""
    for name, info in model.model_fields.items():
        path = prefix + (info.alias or name)
        nested = [a for a in _members(info.annotation) if isinstance(a, type)]
        models = [a for a in nested if issubclass(a, BaseModel)]
        if models:
            yield from _request_paths(models[0], path + ".")
        else:
            yield path


def _members(annotation: Any) -> tuple[Any, ...]:
    if get_origin(annotation) in (Union, types.UnionType):
        return tuple(m for arg in get_args(annotation) for m in _members(arg))
    return (annotation,)


def test_forms_offer_every_field_of_the_create_and_update_requests() -> None:
    """Fails when the API's request models grow a field the form neither offers nor lists as
    not offered (with why): add it to `gateway.ui.form_fields`."""
    asked = set(_request_paths(AddScheduledCampaignBody)) | set(_request_paths(UpdateScheduleBody))
    assert "schedule.jitterSeconds" in asked and "limits.catchUpWindowSeconds" in asked
    missing = asked - set(BY_PATH) - set(NOT_OFFERED)
    assert not missing, f"request fields the schedule form lacks: {sorted(missing)}"
    stale = (set(BY_PATH) | set(NOT_OFFERED)) - asked
    assert not stale, f"form fields the API does not take: {sorted(stale)}"
    assert all(why for why in NOT_OFFERED.values())


def _literal_values(annotation: Any) -> set[str]:
    return {v for m in _members(annotation) if get_origin(m) is Literal for v in get_args(m)}


def test_forms_choices_are_the_values_the_api_takes() -> None:
    dialects = _literal_values(ScheduleSpecIn.model_fields["cron_dialect"].annotation)
    overlaps = _literal_values(RunLimitsIn.model_fields["overlap"].annotation) - {"UNSPECIFIED"}
    for path, taken in (("schedule.cronDialect", dialects), ("limits.overlap", overlaps)):
        offered = {value for value, _ in BY_PATH[path].choices}
        assert offered == taken | {""}, path


def test_forms_a_form_with_every_field_set_is_a_valid_request_with_every_field() -> None:
    """Every offered field reaches the request under its own name (a typo in a path fails)."""
    values = {
        "schedule.runAt": "",
        "schedule.intervalSeconds": "",
        "schedule.cronDialect": "seconds6",
        "schedule.startTime": "2030-01-01T00:00:00Z",
        "schedule.endTime": "2031-01-01T00:00:00Z",
        "schedule.timezone": "Europe/Berlin",
        "schedule.cron": "0 0 9 * * *",
        "scrape.urls": "http://a.example/",
        "scrape.selectors": "title: h1",
        "limits.overlap": "BUFFER_ONE",
        "retryPolicy.multiplier": "2",
        "retryPolicy.initialDelaySeconds": "1",
        "retryPolicy.maxDelaySeconds": "10",
        "retryPolicy.jitter": "0.5",
        "campaignId": "spring",
        "requestId": "r-1",
        "name": "Spring",
    }
    form = {path: values.get(path, "1") for path in BY_PATH}
    body = AddScheduledCampaignBody.model_validate(create_document(form))
    sent = set(_set_paths(body.model_dump(by_alias=True, exclude_none=True)))
    assert sent == set(BY_PATH) - {"schedule.runAt", "schedule.intervalSeconds"}


def _set_paths(document: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in document.items():
        if isinstance(value, dict) and key != "selectors":
            yield from _set_paths(value, f"{prefix}{key}.")
        elif key != "validateOnly":
            yield prefix + key
