"""Extraction: apply a campaign's CSS selectors to one HTML page (selectolax/lexbor).

Each field is the stripped text of the first element its selector matches, or None when the
selector matches nothing. Pure functions; parsing is CPU work, so callers run it in a thread.
"""

from __future__ import annotations

from collections.abc import Sequence

from selectolax.lexbor import LexborHTMLParser, SelectolaxError

from scraper_svc.errors import ExtractError

Fields = tuple[tuple[str, str | None], ...]


def extract_fields(html: str, selectors: Sequence[tuple[str, str]]) -> Fields:
    """``(name, text or None)`` for each ``(name, css selector)``, in the given order."""
    tree = LexborHTMLParser(html)
    fields: list[tuple[str, str | None]] = []
    for name, selector in selectors:
        try:
            node = tree.css_first(selector)
        except SelectolaxError as exc:
            raise ExtractError(f"field {name!r}: {selector!r} is not a valid CSS selector") from exc
        fields.append((name, None if node is None else node.text(separator=" ", strip=True)))
    return tuple(fields)


def no_fields(selectors: Sequence[tuple[str, str]]) -> Fields:
    """Every field unset: the fields of a page that was not extracted (an error page)."""
    return tuple((name, None) for name, _ in selectors)
