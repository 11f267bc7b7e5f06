"""`python -m scheduler_svc`: run the scheduler with settings from SCHEDULER_* variables."""

from __future__ import annotations

import asyncio

from campaign_common.observability.logs import setup_logging
from campaign_common.observability.telemetry import setup_tracing
from campaign_common.settings import TelemetrySettings
from scheduler_svc.config import SchedulerSettings
from scheduler_svc.server import serve


def main() -> None:
    settings = SchedulerSettings()
    service = setup_tracing("scheduler", settings.otlp_endpoint, TelemetrySettings())
    setup_logging(service, settings.log_level, settings.log_json)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
