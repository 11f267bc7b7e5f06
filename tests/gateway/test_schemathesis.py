"""Schemathesis against the real stack (Valkey, scheduler, scraper, gateway: what `make run`
starts), from the OpenAPI document the gateway serves, with a bounded budget.

Positive and negative data (``--mode all``), the spec's examples, and stateful sequences that
follow the document's links (a create's schedule is read, updated, paused, triggered,
deleted). Checks: no 5xx, every response matches its schema, and positive data is accepted, so
creates succeed (the rules JSON Schema cannot state are applied to positive cases by
`tests.gateway.schemathesis_hooks`). A fixed seed keeps the run the same every time.
``runs:watch`` streams until the client leaves; its own tests cover it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from tests.support import ROOT, local_stack

API_KEY = "st-key-0123456789abcdef"
CHECKS = "not_a_server_error,response_schema_conformance,positive_data_acceptance"
# One worker: with two, the workers (threads) race in CPython 3.11's ast.parse (hypothesis
# describes its strategies with it), which fails a run now and then with "SystemError: AST
# constructor recursion depth mismatch" (python/cpython#106905).
BUDGET = ["--max-examples", "15", "--seed", "1", "--no-shrink", "--workers", "1"]
RUN_TIMEOUT_S = 100.0


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_schemathesis_finds_no_5xx_no_schema_mismatch_and_accepts_positive_data(
    tmp_path: Path,
) -> None:
    async with local_stack(GATEWAY_API_KEYS=API_KEY) as stack:
        base_url = str(stack.http.base_url).rstrip("/")
        command = [
            str(Path(sys.executable).parent / "st"),
            "run",
            f"{base_url}/openapi.json",
            "--header",
            f"Authorization: Bearer {API_KEY}",
            "--checks",
            CHECKS,
            "--mode",
            "all",
            "--phases",
            "examples,fuzzing,stateful",
            "--exclude-operation-id",
            "watchRuns",
            "--request-timeout",
            "10",
            "--report",
            "har",
            "--report-har-path",
            str(tmp_path / "run.har"),
            *BUDGET,
        ]
        env = {
            **os.environ,
            "SCHEMATHESIS_HOOKS": "tests.gateway.schemathesis_hooks",
            "PYTHONPATH": str(ROOT),
            "NO_COLOR": "1",
        }
        process = await asyncio.create_subprocess_exec(
            *command,
            cwd=tmp_path,  # schemathesis keeps its state in the working directory
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_S)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        report = output.decode(errors="replace")
        assert process.returncode == 0, report[-6000:]
        assert "generated" in report and "passed" in report, report[-2000:]
    entries = json.loads((tmp_path / "run.har").read_text())["log"]["entries"]
    created = [
        entry
        for entry in entries
        if entry["request"]["method"] == "POST"
        and entry["request"]["url"].endswith("/campaign/addScheduledCampaign")
        and entry["response"]["status"] == 201
    ]
    assert len(created) >= 5, "creates did not succeed:\n" + report[-2000:]
