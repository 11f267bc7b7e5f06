"""The `campaigns` command: the local stack (`up`), each service on its own, and operator
commands over gRPC (`schedules`, `runs`, `dead-letters`; see `campaign_common.cli.operator`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys

from campaign_common.cli.operator import CliSettings, add_operator_commands, run_operator_command

_SERVICES = {"scheduler": "scheduler_svc", "scraper": "scraper_svc", "gateway": "gateway"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="campaigns", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the whole local stack (Redis servers + services)")
    for name in _SERVICES:
        sub.add_parser(name, help=f"run the {name} service alone (settings from env)")
    add_operator_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "up":
        from campaign_common.localstack.stack import StackSettings, run_stack

        return run_stack(StackSettings(), dict(os.environ))
    if args.command in _SERVICES:
        return subprocess.call([sys.executable, "-m", _SERVICES[args.command]])
    return asyncio.run(run_operator_command(args, CliSettings()))


if __name__ == "__main__":
    sys.exit(main())
