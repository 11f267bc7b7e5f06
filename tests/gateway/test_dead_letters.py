"""Dead letters over REST: real HTTP -> gateway -> real scheduler -> real Redis."""

from __future__ import annotations

import httpx
from redis.asyncio import Redis

from campaign_common.runs.deadletters import DeadLetters
from campaign_common.runs.writer import Writer
from campaigns.v1 import events_pb2
from tests.support import PARTITIONS


async def test_dead_letters_list_retry_purge_over_rest(
    gateway: httpx.AsyncClient, state_redis: Redis
) -> None:
    dead = DeadLetters(state_redis, PARTITIONS)
    parked = events_pb2.RunRequested(run_id="s1:1000", schedule_id="s1", campaign_id="c", attempt=3)
    other = events_pb2.RunRequested(run_id="s1:2000", schedule_id="s1", campaign_id="c", attempt=3)
    first = await dead.add(
        parked, "GET http://x/: HTTP 503", deliveries=3, writer=Writer(parked.campaign_id)
    )
    second = await dead.add(
        other, "GET http://x/: HTTP 503", deliveries=5, writer=Writer(other.campaign_id)
    )  # once per run attempt
    listed = await gateway.get("/v1/deadLetters", params={"pageSize": 1})
    assert listed.status_code == 200
    body = listed.json()
    assert [d["id"] for d in body["deadLetters"]] == [second] and body["nextPageToken"]
    entry = body["deadLetters"][0]
    assert entry["runId"] == "s1:2000" and entry["attempt"] == 3 and entry["deliveries"] == 5
    assert entry["error"] == "GET http://x/: HTTP 503" and entry["deadLetteredAt"].endswith("Z")
    retried = await gateway.post(f"/v1/deadLetters/{first}:retry")
    assert retried.status_code == 202
    assert retried.json() == {"runId": "s1:1000", "attempt": 4}
    run = await gateway.get(retried.headers["location"])
    assert run.json()["state"] == "REQUESTED" and run.json()["attempt"] == 4
    assert (await gateway.delete(f"/v1/deadLetters/{second}")).status_code == 204
    gone = await gateway.delete(f"/v1/deadLetters/{second}")
    assert gone.status_code == 404 and gone.json()["code"] == "NOT_FOUND"
    again = await gateway.post(f"/v1/deadLetters/{first}:retry")
    assert again.status_code == 404
