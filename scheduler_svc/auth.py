"""Token auth of the scheduler's gRPC API: ``authorization: Bearer <key>`` metadata, checked in
constant time by a server interceptor, so the API can be exposed beside the gateway.

With no keys configured (``SCHEDULER_API_KEYS`` empty) every call is let through, as before.
Health and reflection stay open either way (probes and tools carry no token). A missing,
malformed or unknown token is UNAUTHENTICATED before the handler runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc

from campaign_common.api_keys import bearer_token, token_matches

OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def _bearer(metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            return bearer_token(value)
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
