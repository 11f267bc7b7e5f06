"""The `campaigns` operator commands as a real process against a real scheduler: add and
update from files, everything shown by `get`, --json, errors on stderr with exit codes."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sys
from pathlib import Path

import pytest

from campaign_common.cli import main as cli
from campaign_common.cli.operator import _ARGUMENTS, COMMANDS, GROUP_HELP
from tests.support import ROOT

SPEC = {
    "name": "Spring leads",
    "campaignId": "spring-leads",
    "schedule": {"cron": "@daily", "timezone": "Europe/Berlin"},
    "scrape": {"urls": ["http://127.0.0.1:1/offer"], "selectors": {"price": ".price"}},
    "limits": {"overlap": "BUFFER_ONE", "maxPages": 5},
    "retryPolicy": {"maxAttempts": 4},
}


async def _cli(target: str, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "campaign_common.cli", *args, "--target", target,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    return process.returncode or 0, out.decode(), err.decode()


async def test_cli_add_from_yaml_get_everything_update_and_json(
    scheduler_target: str, tmp_path: Path
) -> None:
    yaml_file = tmp_path / "spring.yaml"
    yaml_file.write_text(
        "name: Spring leads\ncampaignId: spring-leads\n"
        "schedule: {cron: '30 0 8 * * *', cronDialect: CRON_DIALECT_SECONDS6,"
        " timezone: Europe/Berlin, jitterSeconds: 90}\n"
        "scrape: {urls: ['http://127.0.0.1:1/offer'], selectors: {price: .price}}\n"
        "limits: {overlap: BUFFER_ONE, maxPages: 5, catchUpWindowSeconds: 600}\n"
        "retryPolicy: {maxAttempts: 4}\n"
    )
    add = ("schedules", "add", "-f", str(yaml_file), "--json")
    code, out, err = await _cli(scheduler_target, *add)
    assert code == 0, err
    sid = json.loads(out)["scheduleId"]
    code, out, _ = await _cli(scheduler_target, "schedules", "get", sid)
    assert code == 0
    for shown in ("http://127.0.0.1:1/offer", "price: .price", "overlap BUFFER_ONE",
                  "max_pages=5", "catch_up_window_seconds=600", "up to 4 attempts",
                  "cron seconds6 30 0 8 * * * (Europe/Berlin), jitter 90s",
                  "next fires: "):  # fmt: skip
        assert shown in out, out
    await _cli(scheduler_target, "schedules", "pause", sid, "--note", "holiday")
    code, out, _ = await _cli(scheduler_target, "schedules", "get", sid)
    assert code == 0 and "paused note: holiday" in out and "PAUSED" in out
    code, out, _ = await _cli(scheduler_target, "schedules", "get", sid, "--json")
    document = json.loads(out)
    assert document["scheduleId"] == sid and document["pausedNote"] == "holiday"
    assert document["version"] == "2"  # proto JSON: int64 as a string

    update = {k: v for k, v in SPEC.items() if k != "campaignId"} | {"name": "Renamed"}
    json_file = tmp_path / "update.json"
    json_file.write_text(json.dumps(update))
    code, _, err = await _cli(
        scheduler_target, "schedules", "update", sid, "--file", str(json_file), "--if-version", "1"
    )
    assert code == 5 and "ABORTED" in err
    code, out, err = await _cli(
        scheduler_target, "schedules", "update", sid, "--file", str(json_file), "--if-version", "2"
    )
    assert code == 0 and "name: Renamed" in out, err


async def test_cli_add_with_request_id_is_idempotent(scheduler_target: str, tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    args = ("schedules", "add", "--file", str(spec), "--request-id", "r-1", "--json")
    first = json.loads((await _cli(scheduler_target, *args))[1])
    again = json.loads((await _cli(scheduler_target, *args))[1])
    assert first["scheduleId"] == again["scheduleId"]


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (("schedules", "get", "nope"), 4, "NOT_FOUND"),
        (("runs", "list", "--limit", "-1"), 3, "page_size"),
        (("schedules", "add", "--file", "/nonexistent.json"), 8, "/nonexistent.json"),
    ],
)
async def test_cli_errors_go_to_stderr_with_their_exit_code(
    scheduler_target: str, args: tuple[str, ...], code: int, fragment: str
) -> None:
    got, out, err = await _cli(scheduler_target, *args)
    assert got == code and fragment in err and out == ""


async def test_cli_bad_file_content_is_exit_8(scheduler_target: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "n", "surprise": 1}))
    code, _, err = await _cli(scheduler_target, "schedules", "add", "--file", str(bad))
    assert code == 8 and "surprise" in err


async def test_cli_actions_take_only_their_options(scheduler_target: str) -> None:
    code, _, err = await _cli(scheduler_target, "schedules", "get", "x", "--limit", "3")
    assert code == 2 and "unrecognized arguments" in err
    code, out, _ = await _cli(scheduler_target, "schedules", "pause", "--help")
    assert code == 0 and "--if-version" in out and "--limit" not in out


async def test_cli_runs_watch_prints_changes_as_they_happen(
    scheduler_target: str, tmp_path: Path
) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    sid = json.loads(
        (await _cli(scheduler_target, "schedules", "add", "--file", str(spec), "--json"))[1]
    )["scheduleId"]
    first = (await _cli(scheduler_target, "schedules", "trigger", sid))[1].split()[-1]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "campaign_common.cli", "runs", "watch", "--schedule", sid,
        "--for", "20", "--target", scheduler_target,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        snapshot = await asyncio.wait_for(process.stdout.readline(), 15)
        assert snapshot.decode().startswith(f"{first}  REQUESTED")  # watching now
        second = (await _cli(scheduler_target, "schedules", "trigger", sid))[1].split()[-1]
        change = await asyncio.wait_for(process.stdout.readline(), 10)
        assert change.decode().startswith(f"{second}  REQUESTED")
    finally:
        process.terminate()
        await process.wait()


def _help(*args: str) -> str:
    out = io.StringIO()
    with pytest.raises(SystemExit) as done, contextlib.redirect_stdout(out):
        cli._parser().parse_args([*args, "--help"])
    assert done.value.code == 0
    return out.getvalue()


@pytest.mark.parametrize(
    ("group", "action"), [(g, a) for g, actions in COMMANDS.items() for a in actions]
)
def test_cli_every_action_has_help_json_connection_options_and_only_its_own(
    group: str, action: str
) -> None:
    help_text, arguments = COMMANDS[group][action]
    shown = _help(group, action)
    assert help_text in shown and "--json" in shown and "exit status:" in shown
    for flag in ("--target", "--tls", "--ca-file", "--cert-file", "--key-file", "--server-name"):
        assert flag in shown
    others = {a for a in _ARGUMENTS if a.startswith("--")} - set(arguments)
    assert not [a for a in others if f"{a} " in shown or f"{a}\n" in shown], shown
    assert GROUP_HELP[group] in _help(group)
