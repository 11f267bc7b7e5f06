"""Token auth of the scheduler's gRPC API: ``authorization: Bearer <key>`` metadata, checked in
constant time by a server interceptor, so the API can be exposed beside the gateway.

With no keys configured (``SCHEDULER_API_KEYS`` empty) every call is let through, as before.
Health and reflection stay open either way (probes and tools carry no token). A missing,
malformed or unknown token is UNAUTHENTICATED before the handler runs.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc

OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
_PREFIX = "bearer "


def split_keys(value: object) -> object:
    """A JSON list (``["k1","k2"]``) or a comma-separated string of keys, as a list.

    A malformed JSON list is reported without its content (it holds secrets).
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except ValueError:
            raise ValueError("is not a valid JSON list of keys (content not shown)") from None
    return [key.strip() for key in text.split(",") if key.strip()]


def token_matches(given: str, keys: Sequence[bytes]) -> bool:
    """Whether ``given`` is one of ``keys``; every key is compared, each in constant time."""
    candidate = given.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, key)
    return bool(candidate) and matched


def _bearer(metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            return value[len(_PREFIX) :] if value.lower().startswith(_PREFIX) else ""
    return ""


async def _refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
    await context.abort(
        grpc.StatusCode.UNAUTHENTICATED,
        "missing or invalid token; send the metadata 'authorization: Bearer <key>'",
    )


class TokenAuth(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, keys: Sequence[str]) -> None:
        self._keys = [key.encode() for key in keys]

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method or ""
        if method.startswith(OPEN_SERVICES):
            return await continuation(handler_call_details)
        token = _bearer(handler_call_details.invocation_metadata)
        if token_matches(token, self._keys):
            return await continuation(handler_call_details)
        return grpc.unary_unary_rpc_method_handler(_refuse)
