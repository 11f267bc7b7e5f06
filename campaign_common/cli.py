"""The `campaigns` command: the local stack (`up`) and each service on its own.

Operator commands over gRPC (schedules, runs, dead letters) are added beside these.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

_SERVICES = {"scheduler": "scheduler_svc", "scraper": "scraper_svc", "gateway": "gateway"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="campaigns", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the whole local stack (Redis servers + services)")
    for name in _SERVICES:
        sub.add_parser(name, help=f"run the {name} service alone (settings from env)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "up":
        from campaign_common.stack import StackSettings, run_stack

        return run_stack(StackSettings(), dict(os.environ))
    return subprocess.call([sys.executable, "-m", _SERVICES[args.command]])


if __name__ == "__main__":
    sys.exit(main())
