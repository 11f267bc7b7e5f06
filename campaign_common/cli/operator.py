"""Operator commands of the `campaigns` CLI: schedules, runs, dead letters and a live watch,
over the scheduler's gRPC API, printed as readable tables (``--json``: the API's JSON).

Every call has a deadline. Output goes to stdout; errors go to stderr (the gRPC code, the
message and each field violation) with an exit status scripts can rely on (`EXIT_CODES`):
0 success, 1 any other failure, 2 a usage error (from argparse), 3 invalid argument, 4 not
found, 5 conflict (version mismatch, already exists, failed precondition), 6 unavailable or
timed out (worth retrying), 7 not authenticated or not allowed, 8 an unreadable input file.
The scheduler address, token and TLS come from flags or ``CAMPAIGNS_*`` variables (see
`cli_connection`); connection options that do not fit together are a usage error (2), a TLS
file that cannot be read exits 8.

``schedules add --file f`` and ``schedules update ID --file f`` read the request from a JSON
or YAML file (``.yaml``/``.yml``; needs PyYAML) in the API's JSON form: ``name``,
``campaignId`` (add only), ``schedule`` (``cron`` | ``intervalSeconds`` | ``runAt``,
``timezone``, ``startTime``, ``endTime``), ``scrape`` (``urls``, ``selectors``), ``limits``
(``overlap`` as ``SKIP`` or ``OVERLAP_POLICY_SKIP``), ``retryPolicy``, ``requestId``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from campaign_common.cli.connection import (
    ConnectionOptionsError,
    add_connection_arguments,
    open_channel,
)
from campaign_common.cli.views import (
    dead_letters_table,
    describe_error,
    retry_line,
    runs_table,
    schedule_details,
    schedules_table,
    table,
    watch_line,
)
from campaign_common.errors import CampaignCommonError
from campaign_common.grpc_tls import TlsError
from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc

__all__ = [
    "EXIT_CODES",
    "CliSettings",
    "add_operator_commands",
    "retry_line",
    "run_operator_command",
    "runs_table",
    "table",
    "watch_line",
]

C = grpc.StatusCode
EXIT_CODES = {
    C.INVALID_ARGUMENT: 3,
    C.OUT_OF_RANGE: 3,
    C.NOT_FOUND: 4,
    C.ABORTED: 5,
    C.ALREADY_EXISTS: 5,
    C.FAILED_PRECONDITION: 5,
    C.UNAVAILABLE: 6,
    C.DEADLINE_EXCEEDED: 6,
    C.RESOURCE_EXHAUSTED: 6,
    C.UNAUTHENTICATED: 7,
    C.PERMISSION_DENIED: 7,
}
EXIT_USAGE = 2
EXIT_BAD_FILE = 8
Output = tuple[str, Any]  # (text, what --json prints: a message or a plain JSON value)


class CliSettings(BaseSettings):
    # A malformed setting is reported without its value (the token is a secret).
    model_config = SettingsConfigDict(
        env_prefix="CAMPAIGNS_", frozen=True, extra="ignore", hide_input_in_errors=True
    )

    scheduler_target: str = "127.0.0.1:50051"
    # CAMPAIGNS_TOKEN: sent as 'authorization: Bearer <token>' (the scheduler's API keys).
    token: SecretStr = SecretStr("")
    timeout_s: float = Field(5.0, gt=0)
    # TLS to the scheduler (flags override these; see cli_connection).
    tls: bool = False
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_server_name: str = ""


class BadFile(CampaignCommonError):
    """The request file cannot be read or is not a valid request; the message says why."""


def _as_json(value: Any) -> str:
    if isinstance(value, Message):
        return json_format.MessageToJson(value, indent=2)
    return json.dumps(value, indent=2)


def _read_file(path: str) -> dict[str, Any]:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
        if file.suffix.lower() in (".yaml", ".yml"):
            data = importlib.import_module("yaml").safe_load(text)
        else:
            data = json.loads(text)
    except ModuleNotFoundError as exc:
        raise BadFile(f"{path}: YAML needs PyYAML (pip install pyyaml); or use JSON") from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BadFile(f"{path}: {exc}") from exc
    if not isinstance(data, dict):
        raise BadFile(f"{path}: expected an object with name, schedule, scrape, ...")
    overlap = (data.get("limits") or {}).get("overlap")
    if isinstance(overlap, str) and not overlap.startswith("OVERLAP_POLICY_"):
        data["limits"]["overlap"] = f"OVERLAP_POLICY_{overlap}"
    return data


def request_from_file(path: str, message: Message) -> Message:
    """``message`` filled from the JSON or YAML file at ``path``; BadFile if it does not fit."""
    try:
        return json_format.ParseDict(_read_file(path), message)
    except json_format.ParseError as exc:
        raise BadFile(f"{path}: {exc}") from exc


class Operator:
    """One command against the scheduler; returns the text to print and its JSON form."""

    def __init__(self, stub: api_grpc.SchedulerServiceStub, settings: CliSettings) -> None:
        self._stub = stub
        self._settings = settings
        token = settings.token.get_secret_value()
        self._metadata = [("authorization", f"Bearer {token}")] if token else []

    async def _call(self, method: str, request: Any) -> Any:
        rpc = getattr(self._stub, method)
        return await rpc(request, timeout=self._settings.timeout_s, metadata=self._metadata)

    async def run(self, args: argparse.Namespace) -> Output:
        handler = getattr(self, f"_{args.group}_{args.action}".replace("-", "_"))
        output: Output = await handler(args)
        return output

    async def _schedules_list(self, args: argparse.Namespace) -> Output:
        page = await self._call("ListSchedules", api.ListSchedulesRequest(page_size=args.limit))
        return schedules_table(page.schedules), page

    async def _schedules_get(self, args: argparse.Namespace) -> Output:
        found = await self._call("GetSchedule", api.GetScheduleRequest(schedule_id=args.id))
        return schedule_details(found), found

    async def _schedules_add(self, args: argparse.Namespace) -> Output:
        request: Any = request_from_file(args.file, api.AddScheduledCampaignRequest())
        if args.request_id:
            request.request_id = args.request_id
        created = await self._call("AddScheduledCampaign", request)
        return schedule_details(created), created

    async def _schedules_update(self, args: argparse.Namespace) -> Output:
        request: Any = request_from_file(args.file, api.UpdateScheduleRequest())
        request.schedule_id = args.id
        request.expected_version = args.if_version
        updated = await self._call("UpdateSchedule", request)
        return schedule_details(updated), updated

    async def _schedules_pause(self, args: argparse.Namespace) -> Output:
        request = api.PauseScheduleRequest(
            schedule_id=args.id, note=args.note, expected_version=args.if_version
        )
        paused = await self._call("PauseSchedule", request)
        return schedules_table([paused]), paused

    async def _schedules_resume(self, args: argparse.Namespace) -> Output:
        request = api.ResumeScheduleRequest(schedule_id=args.id, expected_version=args.if_version)
        resumed = await self._call("ResumeSchedule", request)
        return schedules_table([resumed]), resumed

    async def _schedules_delete(self, args: argparse.Namespace) -> Output:
        request = api.DeleteScheduleRequest(schedule_id=args.id, expected_version=args.if_version)
        await self._call("DeleteSchedule", request)
        return f"deleted {args.id}", {"deleted": args.id}

    async def _schedules_trigger(self, args: argparse.Namespace) -> Output:
        request = api.TriggerCampaignRequest(schedule_id=args.id)
        triggered = await self._call("TriggerCampaign", request)
        return f"requested run {triggered.run_id}", triggered

    def _runs_request(self, args: argparse.Namespace) -> api.ListRunsRequest:
        return api.ListRunsRequest(
            schedule_id=args.schedule, campaign_id=args.campaign, page_size=args.limit
        )

    async def _runs_list(self, args: argparse.Namespace) -> Output:
        page = await self._call("ListRuns", self._runs_request(args))
        return runs_table(page.runs), page

    async def _runs_get(self, args: argparse.Namespace) -> Output:
        run = await self._call("GetRun", api.GetRunRequest(run_id=args.id))
        return runs_table([run]), run

    async def _runs_watch(self, args: argparse.Namespace) -> Output:
        """The recent runs, then every change as it happens (WatchRuns), until interrupted
        (or ``--for`` seconds)."""
        seen: dict[str, tuple[int, int]] = {}
        request = api.WatchRunsRequest(schedule_id=args.schedule, campaign_id=args.campaign)
        call = self._stub.WatchRuns(request, metadata=self._metadata)
        try:
            async with asyncio.timeout(args.for_s or None):
                await call.initial_metadata()  # watching before the snapshot: nothing missed
                recent = (await self._call("ListRuns", self._runs_request(args))).runs
                for run in reversed(recent):
                    _show(run, seen, as_json=args.json)
                async for reply in call:
                    _show(reply.run, seen, as_json=args.json)
        except TimeoutError:
            pass
        finally:
            call.cancel()
        return "", None

    async def _dead_letters_list(self, args: argparse.Namespace) -> Output:
        page = await self._call("ListDeadLetters", api.ListDeadLettersRequest(page_size=args.limit))
        return dead_letters_table(page.dead_letters), page

    async def _dead_letters_retry(self, args: argparse.Namespace) -> Output:
        retried = await self._call("RetryDeadLetter", api.RetryDeadLetterRequest(id=args.id))
        return f"requested run {retried.run_id} attempt {retried.attempt}", retried

    async def _dead_letters_purge(self, args: argparse.Namespace) -> Output:
        await self._call("PurgeDeadLetter", api.PurgeDeadLetterRequest(id=args.id))
        return f"purged {args.id}", {"purged": args.id}


def _show(run: Any, seen: dict[str, tuple[int, int]], *, as_json: bool) -> None:
    """Print ``run`` unless this state of this attempt was printed already."""
    if seen.get(run.run_id) == (run.attempt, run.state):
        return
    seen[run.run_id] = (run.attempt, run.state)
    print(json_format.MessageToJson(run, indent=None) if as_json else watch_line(run), flush=True)


# group -> action -> (help, the arguments it takes)
COMMANDS: dict[str, dict[str, tuple[str, list[str]]]] = {
    "schedules": {
        "list": ("list schedules in creation order", ["--limit"]),
        "get": ("show one schedule in full", ["id"]),
        "add": ("create a schedule from a JSON or YAML file", ["--file", "--request-id"]),
        "update": ("replace a schedule from a JSON or YAML file", ["id", "--file", "--if-version"]),
        "pause": ("pause a schedule (the note says why)", ["id", "--note", "--if-version"]),
        "resume": ("resume a paused schedule", ["id", "--if-version"]),
        "delete": ("delete a schedule", ["id", "--if-version"]),
        "trigger": ("run a campaign now, paused or not", ["id"]),
    },
    "runs": {
        "list": ("list runs, newest first", ["--schedule", "--campaign", "--limit"]),
        "get": ("show one run", ["id"]),
        "watch": (
            "print run state changes as they happen",
            ["--schedule", "--campaign", "--limit", "--for"],
        ),
    },
    "dead-letters": {
        "list": ("list dead-lettered runs, newest first", ["--limit"]),
        "retry": ("run a dead-lettered run again as its next attempt", ["id"]),
        "purge": ("drop a dead letter", ["id"]),
    },
}
_ARGUMENTS: dict[str, dict[str, Any]] = {
    "id": {"help": "the id (see the list action)"},
    "--limit": {"type": int, "default": 50, "help": "at most this many (default 50)"},
    "--note": {"default": "", "help": "why; empty keeps the note of a paused schedule"},
    "--schedule": {"default": "", "help": "only runs of this schedule id"},
    "--campaign": {"default": "", "help": "only runs of this campaign id"},
    "--for": {"dest": "for_s", "type": float, "default": 0.0, "help": "stop after seconds"},
    "--file": {"required": True, "help": "the request as JSON, or YAML (.yaml/.yml)"},
    "--request-id": {"default": "", "help": "idempotent create: a retry answers the first"},
    "--if-version": {
        "type": int,
        "default": 0,
        "help": "only if the schedule is at this version (else exit 5)",
    },
}


_FLAGS = {"--file": ("-f", "--file")}
GROUP_HELP = {
    "schedules": "create, show, change, pause, resume, delete and trigger schedules",
    "runs": "list and show runs, or watch them change",
    "dead-letters": "list, retry and purge runs parked after their last attempt",
}
EXIT_HELP = """exit status:
  0 done   1 other failure   2 usage   3 invalid argument   4 not found
  5 conflict (version, exists, precondition)   6 unavailable or timed out (retry)
  7 not authenticated or not allowed   8 unreadable input file"""


def add_operator_commands(sub: Any) -> None:
    """Register ``schedules``, ``runs`` and ``dead-letters`` on the CLI's subparsers."""
    for group, actions in COMMANDS.items():
        group_parser = sub.add_parser(
            group, help=GROUP_HELP[group], description=GROUP_HELP[group], epilog=EXIT_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )  # fmt: skip
        group_parser.set_defaults(group=group.replace("-", "_"))
        actions_parser = group_parser.add_subparsers(dest="action", required=True)
        for action, (help_text, arguments) in actions.items():
            parser = actions_parser.add_parser(
                action, help=help_text, description=help_text, epilog=EXIT_HELP,
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )  # fmt: skip
            parser.add_argument("--json", action="store_true", help="print the API's JSON")
            for argument in arguments:
                parser.add_argument(*_FLAGS.get(argument, (argument,)), **_ARGUMENTS[argument])
            add_connection_arguments(parser)


async def run_operator_command(args: argparse.Namespace, settings: CliSettings) -> int:
    try:
        channel = open_channel(args, settings)
    except ConnectionOptionsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TlsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_FILE
    async with channel:
        stub = api_grpc.SchedulerServiceStub(channel)  # type: ignore[no-untyped-call]
        try:
            text, value = await Operator(stub, settings).run(args)
        except grpc.aio.AioRpcError as exc:
            print(describe_error(exc), file=sys.stderr)
            return EXIT_CODES.get(exc.code(), 1)
        except BadFile as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_BAD_FILE
    if args.json and value is not None:
        print(_as_json(value))
    elif text:
        print(text)
    return 0
