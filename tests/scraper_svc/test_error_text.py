"""Run errors reach API clients: addresses the worker learnt (resolved, connected to, redirected
to) are withheld; what the client gave stays; the rest of the text is untouched."""

from __future__ import annotations

import pytest

from scraper_svc.error_text import WITHHELD, url_hosts, withhold_addresses


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("refused: db.internal resolves to 10.0.0.5, a private address",
         f"refused: db.internal resolves to {WITHHELD}, a private address"),
        ("connection failed: Connect call failed ('127.0.0.1', 8080)",
         f"connection failed: Connect call failed ('{WITHHELD}', 8080)"),
        ("Connect call failed ('fd00::1', 80, 0, 0)",
         f"Connect call failed ('{WITHHELD}', 80, 0, 0)"),
        ("redirect to http://169.254.169.254/latest: refused",
         f"redirect to http://{WITHHELD}/latest: refused"),
        ("via [fe80::1%eth0] or ::ffff:10.0.0.1", f"via [{WITHHELD}] or {WITHHELD}"),
        ("GET http://10.1.2.3:8080/x: refused: 10.1.2.3 is a private address",
         "GET http://10.1.2.3:8080/x: refused: 10.1.2.3 is a private address"),
        ("at 12:30:00 on 2024-01-01T10:00:00Z, version 1.2.3.4.5, HTTP 503",
         "at 12:30:00 on 2024-01-01T10:00:00Z, version 1.2.3.4.5, HTTP 503"),
    ],
)  # fmt: skip
def test_error_text_withholds_addresses_the_client_did_not_give(text: str, shown: str) -> None:
    given = url_hosts(["http://10.1.2.3:8080/x", "https://shop.example/", "not a url ["])
    assert withhold_addresses(text, given) == shown


def test_error_text_keeps_an_ipv6_host_the_client_gave() -> None:
    given = url_hosts(["http://[2001:db8::7]/p"])
    assert withhold_addresses("refused: 2001:db8::7 is reserved", given) == (
        "refused: 2001:db8::7 is reserved"
    )
