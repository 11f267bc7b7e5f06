"""``/docs`` works offline: Swagger UI from the package, no CDN, no inline script."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest

from tests.gateway.ui.browser import chromium, missing

pytestmark = pytest.mark.asyncio(loop_scope="module")
_REFERENCES = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


async def test_docs_page_references_only_its_own_assets_and_they_are_served(
    offline_gateway: httpx.AsyncClient,
) -> None:
    page = await offline_gateway.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    references = _REFERENCES.findall(page.text)
    assert references and all(ref.startswith("/docs/assets/") for ref in references), references
    assert "http://" not in page.text and "https://" not in page.text  # no CDN anywhere
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, re.S)
    assert scripts and all("src=" in attrs and not body.strip() for attrs, body in scripts)
    policy = page.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'"  # no inline scripts, no other origin
    for ref in [*references, "/docs/assets/LICENSE"]:
        asset = await offline_gateway.get(ref)
        assert asset.status_code == 200 and asset.content, ref
    init = (await offline_gateway.get("/docs/assets/swagger-init.js")).text
    assert '"/openapi.json"' in init and "validatorUrl: null" in init
    license_text = (await offline_gateway.get("/docs/assets/LICENSE")).text
    assert "Apache License" in license_text


async def test_docs_unknown_asset_is_404_and_no_cdn_pages_are_left(
    offline_gateway: httpx.AsyncClient,
) -> None:
    missing_asset = await offline_gateway.get("/docs/assets/../app.py")
    assert missing_asset.status_code == 404
    assert (await offline_gateway.get("/docs/assets/nope.js")).status_code == 404
    assert (await offline_gateway.get("/redoc")).status_code == 404  # FastAPI's loads a CDN


def _render(base_url: str) -> dict[str, Any]:
    with chromium(base_url) as browser:
        browser.open("/docs")
        browser.wait(lambda: len(browser.find_all(".opblock")) >= 10, "the operations listed")
        resources = browser.driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
        title = browser.find(".info .title").text
        return {"resources": resources, "title": title}


@pytest.mark.browser
@pytest.mark.skipif(bool(missing()), reason=missing() or "browser available")
async def test_docs_render_in_a_browser_from_the_gateway_alone(
    offline_gateway: httpx.AsyncClient,
) -> None:
    base_url = str(offline_gateway.base_url).rstrip("/")
    rendered = await asyncio.to_thread(_render, base_url)
    assert "Campaign platform gateway" in rendered["title"]
    assert rendered["resources"] and all(
        name.startswith(base_url + "/") for name in rendered["resources"]
    ), rendered["resources"]
