"""`python -m gateway`: run the REST gateway with settings from GATEWAY_* variables."""

from __future__ import annotations

import asyncio
import sys

from pydantic import ValidationError
from pydantic_settings import SettingsError

from campaign_common.observability.logs import setup_logging
from campaign_common.observability.telemetry import setup_tracing
from campaign_common.settings import TelemetrySettings
from gateway.config import GatewaySettings
from gateway.server import StartupError, serve


def main() -> int:
    try:
        settings = GatewaySettings()
    except (
        ValidationError,
        SettingsError,
    ) as exc:  # reported without the values (keys are secrets)
        print(f"gateway: invalid GATEWAY_* settings: {exc}", file=sys.stderr, flush=True)
        return 2
    service = setup_tracing("gateway", settings.otlp_endpoint, TelemetrySettings())
    setup_logging(
        service, settings.log_level, settings.log_json, probe_access_logs=settings.probe_access_log
    )
    try:
        asyncio.run(serve(settings))
    except StartupError as exc:
        print(f"gateway failed to start: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
