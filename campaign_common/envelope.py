"""Stream envelopes: the one format of every entry in every stream.

Fields of a stream entry (all bytes on the wire):
    type         protobuf message name of the body (``RunRequested``, ``ScheduleCreated`` ...)
    schema       envelope schema version (``1``)
    occurred_at  epoch milliseconds when the event happened
    body         the protobuf-encoded message
    traceparent, tracestate   W3C trace context of the producer (may be empty)

Readers decode with `decode_body`, which returns None for an unknown type or schema (logged
once as a warning) so a newer producer never crashes an older reader.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf.message import DecodeError, Message
from opentelemetry.trace import SpanContext

from campaign_common.errors import CampaignCommonError
from campaign_common.observability.telemetry import current_trace_headers
from campaign_common.timeutil import now_ms
from campaigns.v1 import events_pb2

SCHEMA = 1
# Fields of an envelope (`Envelope.to_fields`): its flat field/value list is twice as long.
FIELD_COUNT = 6
log = logging.getLogger(__name__)

_BODY_TYPES: dict[str, type[Message]] = {
    name: getattr(events_pb2, name) for name in events_pb2.DESCRIPTOR.message_types_by_name
}
_warned: set[str] = set()


class EnvelopeError(CampaignCommonError, ValueError):
    """A stream entry is not an envelope (missing or malformed fields)."""


@dataclass(frozen=True)
class Envelope:
    type: str
    body: bytes
    occurred_at_ms: int
    schema: int = SCHEMA
    traceparent: str = ""
    tracestate: str = ""

    def to_fields(self) -> dict[str, bytes | str]:
        return {
            "type": self.type,
            "schema": str(self.schema),
            "occurred_at": str(self.occurred_at_ms),
            "body": self.body,
            "traceparent": self.traceparent,
            "tracestate": self.tracestate,
        }

    def flat_fields(self) -> list[bytes | str]:
        """Field/value pairs flattened, the way a Lua script's ARGV takes them (the order of
        `to_fields`)."""
        return [
            "type", self.type,
            "schema", str(self.schema),
            "occurred_at", str(self.occurred_at_ms),
            "body", self.body,
            "traceparent", self.traceparent,
            "tracestate", self.tracestate,
        ]  # fmt: skip

    @classmethod
    def from_fields(cls, fields: Mapping[bytes, bytes]) -> Envelope:
        try:
            return cls(
                type=fields[b"type"].decode(),
                body=fields[b"body"],
                occurred_at_ms=int(fields[b"occurred_at"]),
                schema=int(fields.get(b"schema", b"1")),
                traceparent=fields.get(b"traceparent", b"").decode(),
                tracestate=fields.get(b"tracestate", b"").decode(),
            )
        except (KeyError, ValueError, UnicodeDecodeError) as exc:
            raise EnvelopeError(f"stream entry is not an envelope: {exc!r}") from exc


def wrap(
    message: Message,
    occurred_at_ms: int | None = None,
    *,
    trace_headers: tuple[str, str] | None = None,
) -> Envelope:
    """Envelope for an event body, stamped with ``trace_headers`` (`span_headers`), else
    with the current trace context."""
    traceparent, tracestate = trace_headers or current_trace_headers()
    return Envelope(
        type=message.DESCRIPTOR.name,
        body=message.SerializeToString(),
        occurred_at_ms=now_ms() if occurred_at_ms is None else occurred_at_ms,
        traceparent=traceparent,
        tracestate=tracestate,
    )


def span_headers(span: SpanContext) -> tuple[str, str]:
    """(traceparent, tracestate) of ``span`` in W3C format, as the propagator injects them
    (empty for an invalid span): without making the span current first."""
    if not span.is_valid:
        return "", ""
    traceparent = f"00-{span.trace_id:032x}-{span.span_id:016x}-{span.trace_flags:02x}"
    return traceparent, span.trace_state.to_header() if span.trace_state else ""


def decode_body(envelope: Envelope) -> Message | None:
    """The event body, or None (with one warning per type) for unknown types or schemas."""
    body_type = _BODY_TYPES.get(envelope.type)
    if body_type is None or envelope.schema != SCHEMA:
        key = f"{envelope.type}/{envelope.schema}"
        if key not in _warned:
            _warned.add(key)
            log.warning("skipping stream entries of unknown type %s schema %s", *key.split("/"))
        return None
    message = body_type()
    try:
        message.ParseFromString(envelope.body)
    except DecodeError:
        log.warning("skipping undecodable %s body", envelope.type)
        return None
    return message
