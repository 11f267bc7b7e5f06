"""The `campaigns` command: the local stack (`up`), each service on its own, and operator
commands over gRPC (`schedules`, `runs`, `dead-letters`; see `campaign_common.cli.operator`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys

from pydantic import ValidationError

from campaign_common.cli.operator import (
    EXIT_HELP,
    EXIT_USAGE,
    CliSettings,
    add_operator_commands,
    run_operator_command,
)

_SERVICES = {"scheduler": "scheduler_svc", "scraper": "scraper_svc", "gateway": "gateway"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="campaigns",
        description=__doc__,
        epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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

        try:
            stack_settings = StackSettings()
        except ValidationError as exc:  # shown without the values (keys are secrets)
            print(f"error: invalid settings of the local stack: {exc}", file=sys.stderr)
            return EXIT_USAGE
        return run_stack(stack_settings, dict(os.environ))
    if args.command in _SERVICES:
        return subprocess.call([sys.executable, "-m", _SERVICES[args.command]])
    try:
        settings = CliSettings()
    except ValidationError as exc:  # shown without the values (the token is a secret)
        print(f"error: invalid CAMPAIGNS_* settings: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(run_operator_command(args, settings))
    except KeyboardInterrupt:  # Ctrl-C ends a watch: no traceback
        return 130


if __name__ == "__main__":
    sys.exit(main())
