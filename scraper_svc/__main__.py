"""`python -m scraper_svc`: run a scraper worker with settings from SCRAPER_* variables."""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError
from pydantic_settings import SettingsError

from campaign_common import event_loop
from campaign_common.observability.logs import setup_logging
from campaign_common.observability.telemetry import setup_tracing
from campaign_common.server_version import UnsupportedServerError
from campaign_common.settings import TelemetrySettings
from scraper_svc.config import ScraperSettings
from scraper_svc.errors import StartupError
from scraper_svc.processes import supervise, worker_settings
from scraper_svc.server import serve


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m scraper_svc")
    parser.add_argument(
        "--worker", type=int, default=None, help=argparse.SUPPRESS
    )  # set by scraper_svc.processes for its children
    args = parser.parse_args()
    try:
        settings = ScraperSettings()
    except (ValidationError, SettingsError) as exc:
        sys.exit(f"scraper: invalid SCRAPER_* settings: {exc}")
    if args.worker is not None:
        settings = worker_settings(settings, args.worker)
    service = setup_tracing("scraper", settings.otlp_endpoint, TelemetrySettings())
    setup_logging(service, settings.log_level, settings.log_json)
    if settings.processes > 1:
        if not event_loop.run(supervise(settings), use_uvloop=settings.uvloop):
            sys.exit("scraper: a worker process could not run (see its log above)")
        return
    try:
        event_loop.run(serve(settings), use_uvloop=settings.uvloop)
    except (StartupError, UnsupportedServerError) as exc:
        sys.exit(f"scraper cannot start: {exc}")


if __name__ == "__main__":
    main()
