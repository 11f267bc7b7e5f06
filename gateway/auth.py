"""API keys: ``Authorization: Bearer <key>`` checked in constant time against the configured keys.

The guard is installed on the API routes only when keys are configured; health probes and the
OpenAPI documents stay open. A missing, malformed or unknown key is 401 UNAUTHENTICATED.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from gateway.errors import unauthenticated

_BEARER = HTTPBearer(auto_error=False, description="an API key configured on the gateway")
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]


def api_key_guard(keys: list[SecretStr]) -> Callable[..., Awaitable[None]]:
    """A dependency accepting ``Authorization: Bearer <key>`` for any of ``keys``."""
    expected = [key.get_secret_value().encode() for key in keys]

    async def require_api_key(credentials: BearerCredentials) -> None:
        given = credentials.credentials.encode() if credentials is not None else b""
        matched = False
        for key in expected:  # constant time per key, and every key is compared
            matched |= hmac.compare_digest(given, key)
        if not given or not matched:
            raise unauthenticated()

    return require_api_key
