"""The interactive API docs at ``/docs``: Swagger UI served from the package, no CDN.

The page works with no network beyond the gateway: its script, stylesheet and icon come from
``gateway/docs_assets`` (the files of the ``swagger-ui-dist`` npm package, version in
`SWAGGER_UI_VERSION`, with its Apache-2.0 LICENSE and NOTICE beside them; refresh them with
``npm pack swagger-ui-dist``), and ``swagger-init.js`` (ours) starts it on ``/openapi.json``.
Its Content-Security-Policy allows scripts from the gateway only, never inline ones; Swagger UI
sets element styles at run time, so styles may be inline. Like health, the docs need no key.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Response
from fastapi.responses import HTMLResponse

from gateway.errors import from_http_status

SWAGGER_UI_VERSION = "5.35.0"
ASSETS_PATH = "/docs/assets"
_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    "LICENSE": "text/plain; charset=utf-8",
    "NOTICE": "text/plain; charset=utf-8",
}
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
_CACHE = "public, max-age=3600"


def _media_type(name: str) -> str | None:
    for suffix, media_type in _MEDIA_TYPES.items():
        if name.endswith(suffix):
            return media_type
    return None


def _load() -> dict[str, tuple[bytes, str]]:
    found: dict[str, tuple[bytes, str]] = {}
    for entry in files("gateway").joinpath("docs_assets").iterdir():
        media_type = _media_type(entry.name)
        if entry.is_file() and media_type is not None:
            found[entry.name] = (entry.read_bytes(), media_type)
    return found


def _page(title: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - API docs</title>
<link rel="stylesheet" href="{ASSETS_PATH}/swagger-ui.css">
<link rel="icon" type="image/png" href="{ASSETS_PATH}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{ASSETS_PATH}/swagger-ui-bundle.js"></script>
<script src="{ASSETS_PATH}/swagger-init.js"></script>
</body>
</html>
"""


def install_docs(app: FastAPI) -> None:
    """``GET /docs`` and its assets (create the app with ``docs_url=None``)."""
    assets = _load()
    page = _page(app.title)

    @app.get("/docs", include_in_schema=False)
    async def api_docs() -> HTMLResponse:
        return HTMLResponse(page, headers=_HEADERS)

    @app.get(ASSETS_PATH + "/{name}", include_in_schema=False)
    async def api_docs_asset(name: str) -> Response:
        if name not in assets:
            raise from_http_status(404, "GET", f"{ASSETS_PATH}/{name}")
        body, media_type = assets[name]
        headers = {**_HEADERS, "Cache-Control": _CACHE}
        return Response(body, media_type=media_type, headers=headers)
