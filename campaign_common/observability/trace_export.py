"""A span exporter that reports a collector outage once, with a count, instead of per batch.

The OTLP exporter logs an ERROR for every batch it fails to send, so a collector that is down
for an hour floods the logs. `OutageLoggingExporter` wraps it: the first failed export of an
outage logs one WARNING; the first export that works again logs how many exports (and spans)
were lost meanwhile.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

log = logging.getLogger(__name__)


class OutageLoggingExporter(SpanExporter):
    def __init__(self, inner: SpanExporter, endpoint: str) -> None:
        self._inner = inner
        self._endpoint = endpoint
        self._lock = threading.Lock()
        self.failed_exports = 0
        self.dropped_spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self._inner.export(spans)
        with self._lock:
            if result is SpanExportResult.FAILURE:
                self._failed(len(spans))
            elif self.failed_exports:
                log.info(
                    "trace collector %s reachable again; %d exports (%d spans) were lost",
                    self._endpoint,
                    self.failed_exports,
                    self.dropped_spans,
                )
                self.failed_exports = self.dropped_spans = 0
        return result

    def _failed(self, spans: int) -> None:
        self.failed_exports += 1
        self.dropped_spans += spans
        if self.failed_exports == 1:
            log.warning(
                "trace collector %s unreachable; spans are dropped until it is back "
                "(logged once per outage)",
                self._endpoint,
            )

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)
