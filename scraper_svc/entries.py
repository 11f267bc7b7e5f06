"""A runs stream entry as the domain sees it: the `RunRequest` a ``RunRequested`` envelope
asks for (limits and retry policy included), or None, with a warning, for anything else.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from campaign_common import retry_policy
from campaign_common.envelope import Envelope, EnvelopeError, decode_body
from campaign_common.runs.limits import limits_from_proto
from campaign_common.timeutil import timestamp_to_ms
from campaigns.v1 import events_pb2
from scraper_svc.model import RunRequest

log = logging.getLogger(__name__)


def to_request(
    entry_id: str, fields: Mapping[bytes, bytes] | None, deliveries: int = 1, partition: int = 0
) -> RunRequest | None:
    """The run an entry asks for, or None (with a warning) for anything else."""
    if fields is None:
        log.warning("runs entry %s was deleted from the stream; skipping it", entry_id)
        return None
    try:
        envelope = Envelope.from_fields(fields)
    except EnvelopeError as exc:
        log.warning("skipping runs entry %s: %s", entry_id, exc)
        return None
    body = decode_body(envelope)
    if body is None:  # decode_body has warned about the unknown type
        return None
    if not isinstance(body, events_pb2.RunRequested):
        log.warning("skipping %s entry %s on the runs stream", envelope.type, entry_id)
        return None
    if not body.run_id or not body.campaign_id:
        log.warning("skipping runs entry %s without run or campaign id", entry_id)
        return None
    return RunRequest(
        entry_id=entry_id,
        run_id=body.run_id,
        schedule_id=body.schedule_id,
        campaign_id=body.campaign_id,
        attempt=body.attempt,
        urls=tuple(body.scrape.urls),
        selectors=tuple(sorted(body.scrape.selectors.items())),
        traceparent=envelope.traceparent,
        tracestate=envelope.tracestate,
        scheduled_for_ms=timestamp_to_ms(body.scheduled_for),
        limits=limits_from_proto(body.limits),
        retry=retry_policy.from_proto(body.retry_policy),
        deliveries=deliveries,
        payload=envelope.body,
        partition=partition,
    )
