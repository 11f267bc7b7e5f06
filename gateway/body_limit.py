"""A cap on request bodies, enforced before anything parses them: 413 with the JSON error body.

`BodyLimit` is pure ASGI middleware. A declared ``Content-Length`` over the cap is answered at
once; a body without one (chunked) is read up to the cap and answered 413 as soon as it passes
it. A body within the cap is handed on unchanged (buffered, then replayed to the app).

Before refusing, the rest of the body is read and dropped (up to `DRAIN_MAX_BYTES`): most
clients read no answer until they have sent everything, and closing on them mid-send resets
the connection instead of showing them the 413.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import GatewayError

PAYLOAD_TOO_LARGE = 413
DRAIN_MAX_BYTES = 64 * 1024 * 1024


def too_large(limit: int) -> GatewayError:
    return GatewayError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"the request body is larger than {limit} bytes; send a smaller body",
        status=PAYLOAD_TOO_LARGE,
    )


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        messages = None
        if declared is None or declared <= self.max_bytes:
            messages = await self._read(receive)
        if messages is None:
            await _drain(receive)
            await _refuse(send, self.max_bytes)
            return
        await self.app(scope, _replay(messages, receive), send)

    async def _read(self, receive: Receive) -> list[Message] | None:
        """The body's messages, or None once they pass the cap."""
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages  # the client left; the app sees the disconnect
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                return None
            if not message.get("more_body", False):
                return messages


async def _drain(receive: Receive) -> None:
    """Read and drop what is left of the body, up to DRAIN_MAX_BYTES."""
    size = 0
    while size <= DRAIN_MAX_BYTES:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        size += len(message.get("body", b""))


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


async def _refuse(send: Send, limit: int) -> None:
    error = too_large(limit)
    body: dict[str, Any] = error.body()
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
