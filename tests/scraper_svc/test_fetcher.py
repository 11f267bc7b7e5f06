"""Fetcher against a real HTTP server on 127.0.0.1: caps, redirects and the SSRF guard."""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from campaign_common.localstack.embedded import free_port
from scraper_svc.errors import FetchError, ResponseTooLarge, TargetRefused
from scraper_svc.fetcher import Fetcher, FetchLimits
from scraper_svc.target_guard import refusal_reason
from tests.scraper_svc.conftest import PageServer, Route

MakeFetcher = Callable[..., Awaitable[Fetcher]]


@pytest.fixture
async def make_fetcher() -> AsyncIterator[MakeFetcher]:
    made: list[Fetcher] = []

    async def make(**overrides: object) -> Fetcher:
        values: dict[str, object] = {
            "timeout_s": 5.0,
            "max_redirects": 5,
            "max_response_bytes": 10_000,
            "user_agent": "test",
            "allow_private_targets": True,
            **overrides,
        }
        fetcher = Fetcher(FetchLimits(**values))  # type: ignore[arg-type]
        made.append(fetcher)
        return fetcher

    yield make
    for fetcher in made:
        await fetcher.aclose()


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("192.168.1.1", "a private address"),
        ("169.254.169.254", "a cloud metadata address"),
        ("169.254.1.1", "a link-local address"),
        ("224.0.0.1", "a multicast address"),
        ("0.0.0.0", "an unspecified address"),
        ("240.0.0.1", "a reserved address"),
        ("100.64.0.1", "a non-global address"),
        ("::1", "a loopback address"),
        ("fe80::1", "a link-local address"),
        ("fc00::1", "a private address"),
        ("::ffff:127.0.0.1", "a loopback address"),
        ("2002:a00:1::", "a private address"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("93.184.215.14", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_fetcher_refusal_reason_classifies_addresses(address: str, reason: str | None) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) == reason


async def test_fetcher_guard_refuses_host_resolving_to_loopback(
    pages: PageServer, make_fetcher: MakeFetcher
) -> None:
    fetcher = await make_fetcher(allow_private_targets=False)
    port = pages.url("/").rsplit(":", 1)[1].rstrip("/")
    url = f"http://localhost:{port}/"
    with pytest.raises(TargetRefused) as refused:
        await fetcher.fetch(url)
    message = str(refused.value)
    assert message.startswith(f"GET {url}: refused: localhost resolves to a loopback address")
    assert "(set SCRAPER_ALLOW_PRIVATE_TARGETS=true" in message
    assert "127.0.0.1" not in message and "::1" not in message  # what it resolved to: logs only
    assert pages.hits == {}


@pytest.mark.parametrize("url", ["ftp://example.com/file", "file:///etc/passwd"])
async def test_fetcher_refuses_non_http_schemes(url: str, make_fetcher: MakeFetcher) -> None:
    fetcher = await make_fetcher()
    with pytest.raises(TargetRefused, match="only http and https URLs are fetched"):
        await fetcher.fetch(url)


async def test_fetcher_follows_redirects_itself(
    pages: PageServer, make_fetcher: MakeFetcher
) -> None:
    pages.routes["/old"] = Route(302, headers=(("location", "/new"),))
    pages.page("/new", "<h1>moved</h1>")
    page = await (await make_fetcher()).fetch(pages.url("/old"))
    assert page.url == pages.url("/old") and page.final_url == pages.url("/new")
    assert page.status_code == 200 and page.text == "<h1>moved</h1>"


async def test_fetcher_caps_redirects(pages: PageServer, make_fetcher: MakeFetcher) -> None:
    pages.routes["/loop"] = Route(302, headers=(("location", "/loop"),))
    fetcher = await make_fetcher(max_redirects=3)
    with pytest.raises(FetchError, match="more than 3 redirects"):
        await fetcher.fetch(pages.url("/loop"))
    assert pages.hits["/loop"] == 4


async def test_fetcher_refuses_redirect_to_non_http_scheme(
    pages: PageServer, make_fetcher: MakeFetcher
) -> None:
    pages.routes["/r"] = Route(302, headers=(("location", "ftp://files.example/x"),))
    with pytest.raises(
        TargetRefused, match=re.escape("redirect to ftp://files.example/x: refused")
    ):
        await (await make_fetcher()).fetch(pages.url("/r"))


async def test_fetcher_size_cap_on_declared_length(
    pages: PageServer, make_fetcher: MakeFetcher
) -> None:
    pages.routes["/big"] = Route(body=b"x" * 101)
    fetcher = await make_fetcher(max_response_bytes=100)
    with pytest.raises(ResponseTooLarge, match="response larger than 100 bytes"):
        await fetcher.fetch(pages.url("/big"))


async def test_fetcher_size_cap_allows_body_at_the_limit(
    pages: PageServer, make_fetcher: MakeFetcher
) -> None:
    pages.routes["/fits"] = Route(body=b"x" * 100, declare_length=False)
    page = await (await make_fetcher(max_response_bytes=100)).fetch(pages.url("/fits"))
    assert len(page.text) == 100


async def test_fetcher_times_out_on_hanging_page(
    pages: PageServer, make_fetcher: MakeFetcher
) -> None:
    pages.routes["/hang"] = Route(hang=True)
    fetcher = await make_fetcher(timeout_s=0.3)
    url = pages.url("/hang")
    with pytest.raises(FetchError) as failed:
        await fetcher.fetch(url)
    assert str(failed.value) == f"GET {url}: timeout after 0.3s"


async def test_fetcher_reports_refused_connection(make_fetcher: MakeFetcher) -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    with pytest.raises(FetchError, match="^" + re.escape(f"GET {url}: connection failed")):
        await (await make_fetcher()).fetch(url)


async def test_fetcher_decodes_declared_charset_and_skips_error_bodies(
    pages: PageServer, make_fetcher: MakeFetcher
) -> None:
    latin = (("content-type", "text/html; charset=iso-8859-1"),)
    pages.routes["/latin"] = Route(body="<p>café</p>".encode("latin-1"), headers=latin)
    pages.routes["/gone"] = Route(410, b"gone for good")
    fetcher = await make_fetcher()
    assert (await fetcher.fetch(pages.url("/latin"))).text == "<p>café</p>"
    gone = await fetcher.fetch(pages.url("/gone"))
    assert gone.status_code == 410 and gone.text == ""


async def test_fetcher_sends_url_credentials_within_their_origin_only(
    pages: PageServer, make_fetcher: MakeFetcher
) -> None:
    other = PageServer()
    try:
        other.page("/elsewhere", "<p>other</p>")
        pages.routes["/a"] = Route(302, headers=(("location", "/b"),))
        pages.routes["/b"] = Route(302, headers=(("location", other.url("/elsewhere")),))
        url = pages.url("/a").replace("http://", "http://ann:p%40ss@")
        page = await (await make_fetcher()).fetch(url)
        assert page.final_url == other.url("/elsewhere") and page.text == "<p>other</p>"
    finally:
        other.close()
    basic = "Basic " + base64.b64encode(b"ann:p@ss").decode()
    assert [(path, sent.get("authorization")) for path, sent in pages.headers] == [
        ("/a", basic),
        ("/b", basic),  # same origin: kept
    ]
    [(_, sent)] = other.headers
    assert "authorization" not in sent  # another origin: dropped


async def test_fetcher_carries_redirect_cookies_within_one_fetch_only(
    pages: PageServer, make_fetcher: MakeFetcher
) -> None:
    pages.routes["/login"] = Route(
        302, headers=(("location", "/home"), ("set-cookie", "session=s1; Path=/; HttpOnly"))
    )
    pages.page("/home", "<p>home</p>")
    fetcher = await make_fetcher()
    await fetcher.fetch(pages.url("/login"))
    await fetcher.fetch(pages.url("/home"))  # a later fetch (another run, maybe)
    cookies = [(path, sent.get("cookie")) for path, sent in pages.headers]
    assert cookies == [("/login", None), ("/home", "session=s1"), ("/home", None)]


async def test_fetcher_sends_its_user_agent_and_accepted_encodings(
    pages: PageServer, make_fetcher: MakeFetcher
) -> None:
    pages.page("/ua", "<p>ua</p>")
    await (await make_fetcher(user_agent="campaigns-test/1")).fetch(pages.url("/ua"))
    [(_, sent)] = pages.headers
    assert sent["user-agent"] == "campaigns-test/1"
    assert sent["accept-encoding"] == "gzip, deflate" and sent["accept"] == "*/*"
    assert sent["host"] == pages.url("/").split("//", 1)[1].rstrip("/")


async def test_fetcher_reports_an_invalid_location(
    pages: PageServer, make_fetcher: MakeFetcher
) -> None:
    pages.routes["/bad"] = Route(302, headers=(("location", "http://[::1/x"),))
    with pytest.raises(FetchError, match="invalid URL in the Location header"):
        await (await make_fetcher()).fetch(pages.url("/bad"))


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http:///x", "refused: the URL names no host"),
        ("example.com/x", "not a URL without a scheme"),
    ],
)
async def test_fetcher_refuses_urls_it_can_never_fetch(
    url: str, reason: str, make_fetcher: MakeFetcher
) -> None:
    with pytest.raises(TargetRefused, match=re.escape(reason)):
        await (await make_fetcher()).fetch(url)
