"""What every dashboard page shares: templates, security headers, error pages, redirects.

Every route of the dashboard is a `UiRoute`: its responses carry a Content-Security-Policy
that allows scripts, styles and requests from the gateway itself only (no inline script or
style, no other origin), and are never cached. A scheduler error on a page becomes an HTML
error page with the same HTTP status the API would answer; a visitor who is not logged in is
redirected to the login form; a form sent from another site is refused (403).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import grpc
from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from gateway.errors import GatewayError
from gateway.ui import wording

PREFIX = "/ui"
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
# What a redirect after a form POST tells (``?done=<code>``); unknown codes show nothing.
NOTICES = {
    "created": "Schedule created.",
    "updated": "Schedule saved.",
    "paused": "Schedule paused.",
    "resumed": "Schedule resumed.",
    "triggered": "Run requested.",
    "deleted": "Schedule deleted.",
    "retried": "Dead letter retried as a new attempt.",
    "purged": "Dead letter purged.",
    "logged-out": "Logged out.",
}


class LoginRequired(Exception):
    """The visitor has no valid session: answered with a redirect to the login form."""


def path_part(value: str) -> str:
    """``value`` quoted as one path segment (ids contain ``:``)."""
    return quote(value, safe="")


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("gateway.ui", "templates"),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["q"] = path_part
    env.filters["when"] = wording.when
    env.filters["spec"] = wording.describe_spec
    env.filters["duration"] = wording.duration
    env.filters["number"] = wording.number
    env.globals["prefix"] = PREFIX
    return env


TEMPLATES = _environment()


def render(
    request: Request, template: str, context: Mapping[str, Any], status: int = 200
) -> HTMLResponse:
    """The page ``template`` rendered with ``context`` (plus the request, the notice of a
    redirect and whether the visitor can log out)."""
    page = TEMPLATES.get_template(template)
    html = page.render(
        request=request,
        logged_in=bool(getattr(request.state, "ui_logged_in", False)),
        notice=NOTICES.get(request.query_params.get("done", ""), ""),
        **context,
    )
    return HTMLResponse(html, status_code=status)


def redirect(path: str, **query: str) -> RedirectResponse:
    """303 See Other to ``/ui<path>`` (the answer to every form POST)."""
    suffix = f"?{urlencode(query)}" if query else ""
    return RedirectResponse(f"{PREFIX}{path}{suffix}", status_code=303)


def error_page(request: Request, error: GatewayError) -> HTMLResponse:
    return render(request, "error.html", {"error": error}, status=error.status)


def _login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path
    if request.url.query:
        target += f"?{request.url.query}"
    if request.method != "GET":
        target = PREFIX + "/"
    return redirect("/login", next=target)


def cross_site(request: Request) -> bool:
    """A form POST sent by another site (Fetch Metadata, else ``Origin`` against ``Host``).

    The session cookie is ``SameSite=Strict`` already; this also covers an open dashboard
    (no API keys, so no cookie) and browsers without SameSite.
    """
    if request.method in ("GET", "HEAD"):
        return False
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return True
    origin = request.headers.get("origin")
    if origin is None:
        return False
    return urlsplit(origin).netloc != request.headers.get("host", "")


def _cross_site_refused(request: Request) -> HTMLResponse:
    error = GatewayError(
        grpc.StatusCode.PERMISSION_DENIED,
        "this form was sent from another site; use the dashboard's own pages",
    )
    return error_page(request, error)


class UiRoute(APIRoute):
    """A dashboard route: security headers on every answer, HTML error pages, login redirect."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            response: Response
            try:
                if cross_site(request):
                    response = _cross_site_refused(request)
                else:
                    response = await handler(request)
            except LoginRequired:
                response = _login_redirect(request)
            except GatewayError as exc:
                response = error_page(request, exc)
            response.headers.update(SECURITY_HEADERS)
            response.headers.setdefault("Cache-Control", "no-store")
            return response

        return page
