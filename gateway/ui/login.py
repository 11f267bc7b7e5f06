"""The login form (takes an API key, sets the session cookie) and logout."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from gateway.ui import forms
from gateway.ui.routing import PREFIX, redirect, render
from gateway.ui.session import Sessions


def _safe_next(target: str) -> str:
    """Only paths inside the dashboard (no other site, no scheme-relative ``//host``)."""
    if target.startswith(PREFIX + "/") and not target.startswith("//"):
        return target
    return PREFIX + "/"


def login_pages(router: APIRouter, sessions: Sessions) -> None:
    @router.get("/login")
    async def login_form(
        request: Request, next_page: Annotated[str, Query(alias="next")] = ""
    ) -> Response:
        if sessions.open:
            return redirect("/")
        context = {"next_page": _safe_next(next_page), "failed": False}
        return render(request, "login.html", context)

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await forms.read_form(request)
        target = _safe_next(form.get("next", ""))
        if not sessions.valid_key(form.get("key", "")):
            context = {"next_page": target, "failed": True}
            return render(request, "login.html", context, status=401)
        response = Response(status_code=303, headers={"Location": target})
        sessions.start(response, form["key"])
        return response

    @router.post("/logout")
    async def logout() -> Response:
        response = redirect("/login", done="logged-out")
        sessions.end(response)
        return response
