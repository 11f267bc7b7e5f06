"""CSS extraction with selectolax."""

from __future__ import annotations

import pytest

from scraper_svc.errors import ExtractError
from scraper_svc.extract import extract_fields, no_fields

HTML = "<html><body><h1>  Title  </h1><p class='a'>first</p><p class='a'>second</p></body></html>"


def test_extract_first_match_stripped_and_none_when_unmatched() -> None:
    selectors = (("title", "h1"), ("para", "p.a"), ("none", "table td"))
    assert extract_fields(HTML, selectors) == (
        ("title", "Title"),
        ("para", "first"),
        ("none", None),
    )


def test_extract_invalid_selector_names_the_field() -> None:
    with pytest.raises(ExtractError, match="field 'bad': 'h1\\[\\[' is not a valid CSS selector"):
        extract_fields(HTML, (("bad", "h1[["),))


def test_extract_no_fields_leaves_every_field_unset() -> None:
    assert no_fields((("a", "h1"), ("b", "p"))) == (("a", None), ("b", None))


def test_extract_joins_nested_text_with_spaces() -> None:
    html = "<h1>Spring <b>sale</b>\n now</h1>"
    assert extract_fields(html, [("title", "h1")]) == (("title", "Spring sale now"),)
