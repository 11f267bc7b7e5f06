"""The create form's fields as the REST create document, and violations placed at fields."""

from __future__ import annotations

from gateway.errors import FieldViolation
from gateway.ui.forms import create_document, field_errors, form_field


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
    assert form_field("limits.windowSeconds") == ""
    errors = field_errors(
        [
            FieldViolation("scrape.urls[1]", "must be http(s)"),
            FieldViolation("limits.windowSeconds", "must be >= 0"),
        ]
    )
    assert errors == {
        "scrape.urls": ["scrape.urls[1]: must be http(s)"],
        "": ["limits.windowSeconds: must be >= 0"],
    }
