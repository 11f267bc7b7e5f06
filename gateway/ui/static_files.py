"""The dashboard's own CSS and JavaScript, served from the package (no CDN, no build step).

Only the files in ``static/`` that exist when the gateway starts are served, by exact name.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, Response

from gateway.errors import from_http_status

MEDIA_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}
CACHE = "public, max-age=300"


def _load() -> dict[str, tuple[bytes, str]]:
    found: dict[str, tuple[bytes, str]] = {}
    for entry in files("gateway.ui").joinpath("static").iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in MEDIA_TYPES:
            found[entry.name] = (entry.read_bytes(), MEDIA_TYPES[suffix])
    return found


def static_routes(router: APIRouter) -> None:
    assets = _load()

    @router.get("/static/{name}")
    async def static_file(name: str) -> Response:
        if name not in assets:
            raise from_http_status(404, "GET", f"/ui/static/{name}")
        body, media_type = assets[name]
        return Response(body, media_type=media_type, headers={"Cache-Control": CACHE})
