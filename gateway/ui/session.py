"""Dashboard sessions: the API key given once in the login form, kept as a cookie.

The cookie holds a token derived from the key (HMAC-SHA256 of a fixed label under the key),
not the key itself, so a leaked cookie is no Bearer key for the API; it is ``HttpOnly``,
``SameSite=Strict`` (which also keeps other sites from posting the dashboard's forms),
``Secure`` unless configured off, and scoped to ``/ui``. Keys and tokens are compared in
constant time, every configured key every time. With no keys configured (the API is open)
the dashboard is open too and there is nothing to log in to.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable

from fastapi import Request, Response

from gateway.config import GatewaySettings
from gateway.ui.routing import PREFIX, LoginRequired

COOKIE = "campaigns_ui_session"
_LABEL = b"campaigns-ui-session/v1"


def _token(key: bytes) -> bytes:
    return hmac.new(key, _LABEL, hashlib.sha256).hexdigest().encode()


def _matches_any(given: bytes, expected: list[bytes]) -> bool:
    matched = False
    for candidate in expected:  # constant time per value, and every value is compared
        matched |= hmac.compare_digest(given, candidate)
    return bool(given) and matched


class Sessions:
    """Checks keys given to the login form and the session cookies issued for them."""

    def __init__(self, settings: GatewaySettings) -> None:
        self._keys = [key.get_secret_value().encode() for key in settings.api_keys]
        self._tokens = [_token(key) for key in self._keys]
        self._secure = settings.ui_cookie_secure
        self._max_age_s = settings.ui_session_max_age_s

    @property
    def open(self) -> bool:
        """True when no keys are configured: no login needed."""
        return not self._keys

    def valid_key(self, given: str) -> bool:
        return _matches_any(given.encode(), self._keys)

    def logged_in(self, request: Request) -> bool:
        if self.open:
            return True
        return _matches_any(request.cookies.get(COOKIE, "").encode(), self._tokens)

    def start(self, response: Response, key: str) -> None:
        """Set the session cookie for ``key`` (already checked with `valid_key`)."""
        response.set_cookie(
            COOKIE,
            _token(key.encode()).decode(),
            max_age=self._max_age_s,
            path=PREFIX,
            secure=self._secure,
            httponly=True,
            samesite="strict",
        )

    def end(self, response: Response) -> None:
        response.delete_cookie(
            COOKIE, path=PREFIX, secure=self._secure, httponly=True, samesite="strict"
        )

    def guard(self) -> Callable[[Request], Awaitable[None]]:
        """A dependency for pages behind the login: raises LoginRequired without a session."""

        async def require_session(request: Request) -> None:
            if not self.logged_in(request):
                raise LoginRequired
            request.state.ui_logged_in = not self.open

        return require_session
