"""Compressed and declared-charset bodies, fetched from a real server on 127.0.0.1."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator

import pytest

from scraper_svc.errors import FetchError, ResponseTooLarge
from scraper_svc.fetcher import Fetcher, FetchLimits
from scraper_svc.response_body import charset
from tests.scraper_svc.conftest import PageServer, Route

HTML = ("<p>Prix : 19,99 €</p>" * 50).encode()


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    limits = FetchLimits(
        timeout_s=5.0, max_redirects=2, max_response_bytes=10_000, user_agent="t",
        allow_private_targets=True,
    )  # fmt: skip
    made = Fetcher(limits)
    yield made
    await made.aclose()


def _encoded(body: bytes, encoding: str) -> Route:
    headers = (("content-type", "text/html; charset=utf-8"), ("content-encoding", encoding))
    return Route(body=body, headers=headers)


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", gzip.compress(HTML)),
        ("x-gzip", gzip.compress(HTML)),
        ("deflate", zlib.compress(HTML)),  # as the standard says: zlib-wrapped
        ("deflate", _raw_deflate(HTML)),  # as some servers send it: raw
        ("identity", HTML),
    ],
    ids=["gzip", "x-gzip", "deflate-zlib", "deflate-raw", "identity"],
)
async def test_response_body_is_decoded_as_its_content_encoding(
    encoding: str, body: bytes, pages: PageServer, fetcher: Fetcher
) -> None:
    pages.routes["/p"] = _encoded(body, encoding)
    page = await fetcher.fetch(pages.url("/p"))
    assert page.text == HTML.decode() and page.size == len(HTML)


async def test_response_body_inflating_past_the_cap_stops_there(
    pages: PageServer, fetcher: Fetcher
) -> None:
    bomb = gzip.compress(b"\0" * 5_000_000)  # about 5 KB on the wire, under the cap
    assert len(bomb) < 10_000
    pages.routes["/bomb"] = _encoded(bomb, "gzip")
    with pytest.raises(ResponseTooLarge, match="response larger than 10000 bytes"):
        await fetcher.fetch(pages.url("/bomb"))


async def test_response_body_corrupt_or_unasked_encodings_are_errors_naming_them(
    pages: PageServer, fetcher: Fetcher
) -> None:
    pages.routes["/corrupt"] = _encoded(b"not gzip at all", "gzip")
    pages.routes["/br"] = _encoded(b"\x1b\x00", "br")
    with pytest.raises(FetchError, match="the gzip body does not decode"):
        await fetcher.fetch(pages.url("/corrupt"))
    with pytest.raises(FetchError, match="unsupported content-encoding 'br'"):
        await fetcher.fetch(pages.url("/br"))


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        (b"text/html; charset=ISO-8859-1", "iso-8859-1"),
        (b'text/html;charset="utf-8"; q=1', "utf-8"),
        (b"text/html", None),
        (None, None),
    ],
)
def test_response_body_charset_comes_from_the_content_type(
    content_type: bytes | None, expected: str | None
) -> None:
    headers = [] if content_type is None else [(b"content-type", content_type)]
    assert charset(headers) == expected


async def test_response_body_in_an_unknown_charset_is_read_as_utf8(
    pages: PageServer, fetcher: Fetcher
) -> None:
    headers = (("content-type", "text/html; charset=x-unheard-of"),)
    pages.routes["/odd"] = Route(body="<p>é</p>".encode(), headers=headers)
    assert (await fetcher.fetch(pages.url("/odd"))).text == "<p>é</p>"
