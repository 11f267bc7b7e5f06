"""`python -m scheduler_svc`: run the scheduler with settings from SCHEDULER_* variables."""

from __future__ import annotations

import sys

from pydantic import ValidationError
from pydantic_settings import SettingsError

from campaign_common import event_loop
from campaign_common.grpc_tls import TlsError
from campaign_common.observability.logs import setup_logging
from campaign_common.observability.telemetry import setup_tracing
from campaign_common.server_version import UnsupportedServerError
from campaign_common.settings import TelemetrySettings
from scheduler_svc.config import SchedulerSettings
from scheduler_svc.errors import StartupError
from scheduler_svc.server import serve


def main() -> None:
    try:
        settings = SchedulerSettings()
    except (ValidationError, SettingsError) as exc:
        sys.exit(f"scheduler: invalid SCHEDULER_* settings: {exc}")
    service = setup_tracing("scheduler", settings.otlp_endpoint, TelemetrySettings())
    setup_logging(service, settings.log_level, settings.log_json)
    try:
        event_loop.run(serve(settings), use_uvloop=settings.uvloop)
    except (StartupError, UnsupportedServerError, TlsError) as exc:
        sys.exit(f"scheduler cannot start: {exc}")


if __name__ == "__main__":
    main()
