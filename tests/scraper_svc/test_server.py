"""The scraper in-process against real Redis servers and a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from campaign_common.envelope import Envelope
from campaign_common.localstack.embedded import EmbeddedStack
from campaign_common.observability.telemetry import tracer
from campaign_common.redis_conn import make_client
from campaign_common.redlock.client import Redlock
from campaign_common.redlock.scripts import lock_key
from campaign_common.runs.keys import SCRAPER_GROUP
from campaign_common.runs.log import RunLog
from campaign_common.runs.record import RunState
from campaign_common.runs.writer import Writer
from campaigns.v1 import events_pb2
from scraper_svc.errors import StartupError
from scraper_svc.store import campaign_lock_resource
from tests.scraper_svc.conftest import (
    NO_RETRIES,
    PageServer,
    Route,
    StartScraper,
    finished_run,
    run_request,
)
from tests.support import PARTITIONS, events_stream, eventually, part, pending_all, xrange_all

PAGE = "<html><body><h1> Spring sale </h1><span class='price'>9.99</span></body></html>"


def _fields(result: object) -> dict[str, str | None]:
    return {f.name: f.text if f.HasField("text") else None for f in result.fields}  # type: ignore[attr-defined]


async def _pending(state_redis: Redis) -> int:
    return await pending_all(state_redis)


C = part("c")  # the partition of campaign "c", the campaign of most runs here


async def test_server_run_succeeds_with_fields_extracted(
    state_redis: Redis, pages: PageServer, start_scraper: StartScraper
) -> None:
    await start_scraper(user_agent="test-agent/1")
    url = pages.page("/offer", PAGE)
    selectors = {"title": "h1", "price": ".price", "missing": ".nothing"}
    runs = RunLog(state_redis, PARTITIONS)
    await runs.request_run(run_request("r-ok", "spring", [url], selectors), dedupe=False)

    run = await finished_run(state_redis, "r-ok")
    assert run.state is RunState.SUCCEEDED, run.error
    assert run.error == "" and run.started_at_ms > 0 and run.finished_at_ms >= run.started_at_ms
    [result] = await runs.list_results("spring", 10)
    assert result.run_id == "r-ok" and result.url == url and result.status_code == 200
    assert _fields(result) == {"title": "Spring sale", "price": "9.99", "missing": None}
    assert pages.user_agents == ["test-agent/1"]
    assert await _pending(state_redis) == 0
    events = await xrange_all(state_redis, events_stream)
    assert [Envelope.from_fields(f).type for _, f in events] == ["RunStarted", "RunSucceeded"]


async def test_server_run_fails_on_error_status_naming_the_url(
    state_redis: Redis, pages: PageServer, start_scraper: StartScraper
) -> None:
    await start_scraper()
    good = pages.page("/good", PAGE)
    broken = pages.page("/broken", "oops", status=404)
    runs = RunLog(state_redis, PARTITIONS)
    request = run_request("r-404", "c404", [good, broken], {"title": "h1"})
    await runs.request_run(request, dedupe=False)

    run = await finished_run(state_redis, "r-404")
    assert run.state is RunState.FAILED and run.attempt == 1  # a 404 is never retried
    assert run.error == f"GET {broken}: HTTP 404"
    results = {r.url: r for r in await runs.list_results("c404", 10)}
    assert _fields(results[good]) == {"title": "Spring sale"}
    assert results[broken].status_code == 404 and _fields(results[broken]) == {"title": None}
    assert await _pending(state_redis) == 0


async def test_server_run_skipped_with_overlap_while_campaign_lock_is_held(
    state_redis: Redis, pages: PageServer, lock_urls: list[str], start_scraper: StartScraper
) -> None:
    clients = [make_client(url, 1.0) for url in lock_urls]
    redlock = Redlock(clients, node_timeout_s=0.5)
    try:
        held = await redlock.acquire(campaign_lock_resource("busy"), 30_000)
        await start_scraper()
        runs = RunLog(state_redis, PARTITIONS)
        url = pages.page("/p", PAGE)
        await runs.request_run(run_request("r-skip", "busy", [url], {"t": "h1"}), dedupe=False)

        run = await finished_run(state_redis, "r-skip")
        assert run.state is RunState.SKIPPED and run.error == "overlap"
        assert pages.hits == {} and await runs.list_results("busy", 10) == []
        assert await clients[0].get(lock_key(campaign_lock_resource("busy"))) == held.token
        await redlock.release(held)
    finally:
        await redlock.aclose()
        for client in clients:
            await client.aclose()


async def test_server_refuses_loopback_target_unless_allowed(
    state_redis: Redis, pages: PageServer, start_scraper: StartScraper
) -> None:
    await start_scraper(allow_private_targets=False)
    url = pages.page("/inner", PAGE)
    await RunLog(state_redis, PARTITIONS).request_run(
        run_request("r-ssrf", "c", [url], {}), dedupe=False
    )

    run = await finished_run(state_redis, "r-ssrf")
    assert run.state is RunState.FAILED
    assert run.error.startswith(f"GET {url}: refused: 127.0.0.1 is a loopback address")
    assert "loopback" in run.error and "SCRAPER_ALLOW_PRIVATE_TARGETS=true" in run.error
    assert pages.hits == {}


async def test_server_run_fails_when_response_exceeds_size_cap(
    state_redis: Redis, pages: PageServer, start_scraper: StartScraper
) -> None:
    await start_scraper(max_response_bytes=1000)
    pages.routes["/big"] = Route(body=b"<p>" + b"x" * 5000 + b"</p>", declare_length=False)
    url = pages.url("/big")
    await RunLog(state_redis, PARTITIONS).request_run(
        run_request("r-big", "c", [url], {}), dedupe=False
    )

    run = await finished_run(state_redis, "r-big")
    assert run.state is RunState.FAILED
    assert run.error == (
        f"GET {url}: response larger than 1000 bytes (raise SCRAPER_MAX_RESPONSE_BYTES to allow it)"
    )


async def test_server_acks_and_skips_unknown_entries_then_runs_the_next(
    state_redis: Redis, pages: PageServer, start_scraper: StartScraper
) -> None:
    unknown = Envelope(type="FutureEvent", body=b"\x01", occurred_at_ms=1)
    await state_redis.xadd(C.runs_stream, unknown.to_fields())  # type: ignore[arg-type]
    await state_redis.xadd(C.runs_stream, {"garbage": "not an envelope"})
    url = pages.page("/p", PAGE)
    await RunLog(state_redis, PARTITIONS).request_run(
        run_request("r-next", "c", [url], {}), dedupe=False
    )
    await start_scraper()

    run = await finished_run(state_redis, "r-next")
    assert run.state is RunState.SUCCEEDED
    assert await eventually(lambda: _no_pending(state_redis), what="every entry acked")
    groups = await state_redis.xinfo_groups(C.runs_stream)
    assert groups[0]["entries-read"] == 3


async def _no_pending(state_redis: Redis) -> bool:
    return await _pending(state_redis) == 0


async def _deliver_to(state_redis: Redis, consumer: str) -> None:
    """What a worker that died after reading (before acking) leaves: a pending entry."""
    await state_redis.xgroup_create(C.runs_stream, SCRAPER_GROUP, id="0")
    await state_redis.xreadgroup(SCRAPER_GROUP, consumer, {C.runs_stream: ">"}, count=10)
    assert await _pending(state_redis) == 1


async def test_server_processes_own_pending_entries_on_restart(
    state_redis: Redis, pages: PageServer, start_scraper: StartScraper
) -> None:
    url = pages.page("/p", PAGE)
    await RunLog(state_redis, PARTITIONS).request_run(
        run_request("r-pend", "c", [url], {}), dedupe=False
    )
    await _deliver_to(state_redis, "crashed")

    await start_scraper(consumer_name="crashed")
    run = await finished_run(state_redis, "r-pend")
    assert run.state is RunState.SUCCEEDED and pages.hits == {"/p": 1}
    assert await eventually(lambda: _no_pending(state_redis), what="the pending entry acked")


async def test_server_acks_redelivered_run_already_finished_without_running_it(
    state_redis: Redis, pages: PageServer, start_scraper: StartScraper
) -> None:
    url = pages.page("/p", PAGE)
    runs = RunLog(state_redis, PARTITIONS)
    await runs.request_run(run_request("r-done", "c", [url], {}), dedupe=False)
    await _deliver_to(state_redis, "crashed")
    done = events_pb2.RunSucceeded(run_id="r-done", attempt=1)
    await runs.append_event(
        done, state=RunState.SUCCEEDED, changes={"finished_at_ms": 1}, writer=Writer("c")
    )

    await start_scraper(consumer_name="crashed")
    assert await eventually(lambda: _no_pending(state_redis), what="the pending entry acked")
    assert pages.hits == {}


async def test_server_runs_of_one_campaign_never_overlap(
    state_redis: Redis, pages: PageServer, start_scraper: StartScraper
) -> None:
    await start_scraper(concurrency=4)
    pages.routes["/slow"] = Route(body=PAGE.encode(), hang=True)
    url = pages.url("/slow")
    runs = RunLog(state_redis, PARTITIONS)
    await runs.request_run(run_request("r-first", "one", [url], {}), dedupe=False)
    await eventually(lambda: _state_is(runs, "r-first", RunState.RUNNING), what="first running")
    await runs.request_run(run_request("r-second", "one", [url], {}), dedupe=False)

    second = await finished_run(state_redis, "r-second")
    assert second.state is RunState.SKIPPED and second.error == "overlap"
    pages.release.set()
    first = await finished_run(state_redis, "r-first")
    assert first.state is RunState.SUCCEEDED


async def _state_is(runs: RunLog, run_id: str, state: RunState) -> bool:
    run = await runs.get_run(run_id)
    return run is not None and run.state is state


async def test_server_stop_cancels_runs_after_grace_and_releases_lock(
    state_redis: Redis, pages: PageServer, lock_urls: list[str], start_scraper: StartScraper
) -> None:
    server = await start_scraper(shutdown_grace_s=0.2)
    pages.routes["/hang"] = Route(hang=True)
    runs = RunLog(state_redis, PARTITIONS)
    request = run_request("r-hang", "stuck", [pages.url("/hang")], {})
    await runs.request_run(request, dedupe=False)
    await eventually(lambda: _state_is(runs, "r-hang", RunState.RUNNING), what="run started")

    await asyncio.wait_for(server.stop(), timeout=5)
    key = lock_key(campaign_lock_resource("stuck"))
    for url in lock_urls:
        client = make_client(url, 1.0)
        assert await client.exists(key) == 0
        await client.aclose()
    assert await _pending(state_redis) == 1  # not acked: it runs again on the next start


async def test_server_start_needs_a_majority_of_lock_masters(
    state_redis: Redis,
    pages: PageServer,
    redis_stack: EmbeddedStack,
    start_scraper: StartScraper,
) -> None:
    redis_stack.locks[0].kill()
    await start_scraper(consumer_name="with-two")  # two of three: runs still get their lock
    url = pages.page("/p", PAGE)
    await RunLog(state_redis, PARTITIONS).request_run(
        run_request("r-two", "c", [url], {}), dedupe=False
    )
    assert (await finished_run(state_redis, "r-two")).state is RunState.SUCCEEDED

    redis_stack.locks[1].kill()
    with pytest.raises(StartupError, match=r"only 1 of 3 lock masters answered; .* needs 2"):
        await start_scraper(consumer_name="with-one")


async def test_server_run_longer_than_the_lock_ttl_keeps_its_lock_by_extension(
    state_redis: Redis, pages: PageServer, lock_urls: list[str], start_scraper: StartScraper
) -> None:
    # TTLs of a second or more: a lock command's per-node deadline is a tenth of the TTL.
    await start_scraper(lock_ttl_ms=1000)
    pages.routes["/slow"] = Route(body=PAGE.encode(), delay_s=2.2)  # two TTLs and more
    await RunLog(state_redis, PARTITIONS).request_run(
        run_request("r-long", "long", [pages.url("/slow")], {"t": "h1"}), dedupe=False
    )
    run = await finished_run(state_redis, "r-long")
    assert run.state is RunState.SUCCEEDED, run.error
    assert run.finished_at_ms - run.started_at_ms >= 2200
    key = lock_key(campaign_lock_resource("long"))
    for url in lock_urls:  # released at the end
        client = make_client(url, 1.0)
        assert await client.exists(key) == 0
        await client.aclose()


async def test_server_run_fails_with_lease_lost_at_the_lease_cap(
    state_redis: Redis, pages: PageServer, start_scraper: StartScraper
) -> None:
    await start_scraper(lock_ttl_ms=3000, lock_max_lease_s=0.5)  # capped before an extension
    pages.routes["/hang"] = Route(hang=True)
    await RunLog(state_redis, PARTITIONS).request_run(
        run_request("r-cap", "c", [pages.url("/hang")], {}, retry=NO_RETRIES), dedupe=False
    )
    run = await finished_run(state_redis, "r-cap")
    assert run.state is RunState.DEAD_LETTERED
    assert run.error == "lease lost: maximum lease time of 0.5 s reached"
    assert await eventually(lambda: _no_pending(state_redis), what="the entry acked")


async def test_server_concurrency_bounds_runs_delivered_to_a_worker(
    state_redis: Redis, pages: PageServer, start_scraper: StartScraper
) -> None:
    await start_scraper(concurrency=2)
    pages.routes["/hang"] = Route(body=PAGE.encode(), hang=True)
    runs = RunLog(state_redis, PARTITIONS)
    for n in range(3):
        request = run_request(f"r-{n}", f"camp-{n}", [pages.url("/hang")], {})
        await runs.request_run(request, dedupe=False)

    async def two_fetching() -> bool:
        return pages.hits.get("/hang", 0) == 2

    await eventually(two_fetching, what="two runs fetching")
    assert await _pending(state_redis) == 2  # the third is not even read while slots are full
    pages.release.set()
    for n in range(3):
        assert (await finished_run(state_redis, f"r-{n}")).state is RunState.SUCCEEDED


async def test_server_run_events_continue_the_requesters_trace(
    state_redis: Redis, pages: PageServer, start_scraper: StartScraper
) -> None:
    await start_scraper()
    url = pages.page("/p", PAGE)
    with tracer("test").start_as_current_span("request") as span:
        trace_id = f"{span.get_span_context().trace_id:032x}"
        await RunLog(state_redis, PARTITIONS).request_run(
            run_request("r-tr", "c", [url], {}), dedupe=False
        )
    await finished_run(state_redis, "r-tr")
    events = [Envelope.from_fields(f) for _, f in await xrange_all(state_redis, events_stream)]
    assert [e.type for e in events] == ["RunStarted", "RunSucceeded"]
    assert all(e.traceparent.split("-")[1] == trace_id for e in events)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1/a\x01b", "http://[::1"],
)
async def test_server_run_with_a_url_that_can_never_be_fetched_fails_once(
    state_redis: Redis, start_scraper: StartScraper, url: str
) -> None:
    await start_scraper()
    request = run_request("r-bad-url", "c", [url], {})
    await RunLog(state_redis, PARTITIONS).request_run(request, dedupe=False)
    run = await finished_run(state_redis, "r-bad-url")
    assert run.state is RunState.FAILED and run.attempt == 1, run  # never retried: it cannot pass
    assert run.error.startswith("GET "), run.error
    assert await eventually(lambda: _no_pending(state_redis), what="the entry acked")


async def test_server_refuses_another_partition_count(
    state_redis: Redis, start_scraper: StartScraper
) -> None:
    from campaign_common.runs.keys import PARTITION_COUNT_KEY

    await state_redis.set(PARTITION_COUNT_KEY, len(PARTITIONS))
    with pytest.raises(StartupError, match="SCRAPER_PARTITIONS=3, but this deployment's runs"):
        await start_scraper(partitions=3)
