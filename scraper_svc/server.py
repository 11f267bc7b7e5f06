"""Wiring of the scraper process: Redis connections, the consumer loop, signals, shutdown.

Start-up: connect to the state Redis and every lock master with the version check (a
majority of lock masters must answer; the others are used once they come back), build the
Redlock client over the masters, create the consumer group, start the consumer loop and the
retry pump under a `Supervisor`, and the metrics endpoint (``/metrics``, ``/healthz``) if
configured.

While running: the retry pump is restarted with backoff after an unexpected error (it never
takes the consumer down with it). The consumer loop is fatal: restarting it in place would
lose what it holds, so its unexpected error stops the pump, `serve_until` raises and the
process exits non-zero for its own supervisor to restart. ``/healthz`` answers 503 while a
loop is down (between a crash and its restart, or until the exit), 200 otherwise.

Shutdown (SIGTERM/SIGINT), every step bounded:
    stop reading and pumping (the read in progress returns within block_ms)
    -> in-flight runs finish within shutdown_grace_s
    -> runs still going are cancelled (each releases its campaign lock and cluster slot; its
       entry stays pending)
    -> hand back: every entry still pending for this worker is made idle, so another worker
       takes it over at its next reclaim (not lost, and not waiting for reclaim_idle_ms)
    -> stop the metrics endpoint (in a thread: it blocks)
    -> close the Redlock client (pending releases finish), the HTTP client, the Redis clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from redis.asyncio import Redis
from redis.exceptions import RedisClusterException, RedisError

from campaign_common.api_keys import key_bytes
from campaign_common.observability.metrics import MetricsEndpoint
from campaign_common.redis_conn import connect_checked, make_client
from campaign_common.redis_topology import connect_state, redact_url, unreachable_message
from campaign_common.redlock.client import Redlock
from campaign_common.redlock.errors import QuorumUnavailable
from campaign_common.runs.keys import (
    PartitionCountMismatch,
    Partitions,
    check_partition_count,
)
from campaign_common.server_version import UnsupportedServerError
from campaign_common.supervisor import Backoff, Loop, Supervisor
from campaign_common.tls import TlsFiles
from scraper_svc import metrics
from scraper_svc.config import ScraperSettings
from scraper_svc.consumer import RunConsumer
from scraper_svc.errors import StartupError
from scraper_svc.fetcher import Fetcher, FetchLimits
from scraper_svc.limits import LimitDefaults
from scraper_svc.lock_health import LockProbe
from scraper_svc.overlap import CampaignGuard
from scraper_svc.politeness import HostGate
from scraper_svc.pump import RetryPump
from scraper_svc.runner import RunRunner
from scraper_svc.scrape import Scraper
from scraper_svc.semaphore import ClusterSemaphore
from scraper_svc.slots import Slots
from scraper_svc.store import ScraperStore

log = logging.getLogger(__name__)
# After cancelling, runs only release their locks (each lock command has a per-node deadline).
CANCEL_WAIT_S = 5.0


class ScraperServer:
    # Restart delays of a crashed background loop (the retry pump).
    loop_backoff = Backoff(initial_s=0.5, max_s=30.0)

    def __init__(self, settings: ScraperSettings) -> None:
        self.settings = settings
        self._redis: Redis | None = None
        self._lock_clients: list[Redis] = []
        self._redlock: Redlock | None = None
        self._fetcher: Fetcher | None = None
        self._store: ScraperStore | None = None
        self._consumers: list[RunConsumer] = []
        self._slots: Slots | None = None
        self._pump: RetryPump | None = None
        self.metrics: MetricsEndpoint | None = None
        self._supervisor: Supervisor | None = None
        self._loop: asyncio.Task[None] | None = None
        self._stopped = False

    @property
    def consumer_name(self) -> str:
        return self.settings.consumer_name

    @property
    def in_flight(self) -> int:
        """Runs this worker is processing right now."""
        return self._slots.running() if self._slots is not None else 0

    async def start(self) -> None:
        s = self.settings
        try:
            self._redis = await _connect_state(s)
            self._lock_clients = await _connect_lock_masters(
                s.lock_redis_urls, s.lock_node_timeout_s, s.tls_files()
            )
            self._redlock = Redlock(
                self._lock_clients,
                node_timeout_s=s.lock_node_timeout_s,
                drift_factor=s.lock_drift_factor,
                fence_ttl_ms=int(s.run_retention_s * 1000),
            )
            await _connect_redlock(self._redlock)
            partitions = Partitions(s.partitions)
            try:
                await check_partition_count(self._redis, partitions, "SCRAPER_PARTITIONS")
            except PartitionCountMismatch as exc:
                raise StartupError(str(exc)) from exc
            store = ScraperStore(
                self._redis,
                partitions,
                consumer=s.consumer_name,
                results_cap=s.results_cap,
                run_ttl_ms=int(s.run_retention_s * 1000),
                op_ttl_ms=int(s.operation_ttl_s * 1000),
            )
            await store.ensure_group()
        except BaseException:
            await self._close_clients()
            raise
        self._store = store
        self._fetcher = Fetcher(_fetch_limits(s))
        self._pump = RetryPump(store, interval_s=s.retry_poll_ms / 1000)
        runner = self._runner(store, self._redlock, self._fetcher)
        self._slots = Slots(s.concurrency)
        self._consumers = [
            RunConsumer(
                store,
                runner,
                consumer=s.consumer_name,
                concurrency=s.concurrency,
                read_batch=s.read_batch,
                block_ms=s.block_ms,
                retry_delay_s=s.retry_delay_s,
                retry_max_s=s.retry_max_delay_s,
                reclaim_idle_ms=s.reclaim_idle_ms,
                reclaim_interval_s=s.reclaim_interval_s,
                partition=partition.index,
                slots=self._slots,
            )
            for partition in partitions
        ]
        self._supervisor = Supervisor(
            self._loops(self._consumers, self._pump),
            metrics.LOOPS,
            stop=asyncio.Event(),
            backoff=self.loop_backoff,
        )
        if s.metrics_port is not None:
            self.metrics = MetricsEndpoint(
                s.metrics_host, s.metrics_port, self._supervisor.problems, key_bytes(s.metrics_keys)
            )
            self.metrics.start()
        self._loop = asyncio.create_task(self._supervisor.run(), name="background-loops")
        log.info(
            "scraper ready",
            extra={"consumer": s.consumer_name, "lock_masters": len(s.lock_redis_urls)},
        )

    def _loops(self, consumers: list[RunConsumer], pump: RetryPump) -> list[Loop]:
        """The consumer loops, one per partition (fatal, see the module doc), the retry pump
        (restarted) and the lock-master probe."""
        assert self._redlock is not None
        s = self.settings
        return [
            *(
                Loop(f"runs-consumer-{c.partition}", c.run, c.request_stop, fatal=True)
                for c in consumers
            ),
            Loop("retry-pump", pump.run, pump.request_stop),
            LockProbe(self._redlock, s.lock_node_timeout_s, s.lock_probe_interval_s).loop(),
        ]

    def _runner(self, store: ScraperStore, redlock: Redlock, fetcher: Fetcher) -> RunRunner:
        s = self.settings
        guard = CampaignGuard(redlock, store, ttl_ms=s.lock_ttl_ms, max_lease_s=s.lock_max_lease_s)
        slots = ClusterSemaphore(
            store.redis,
            limit=s.max_cluster_runs,
            ttl_ms=s.cluster_slot_ttl_ms,
            wait_s=s.cluster_slot_wait_s,
        )
        scraper = Scraper(fetcher, HostGate())
        return RunRunner(
            store,
            guard,
            slots,
            scraper,
            worker=s.consumer_name,
            defaults=_limit_defaults(s),
            max_deliveries=s.max_deliveries,
        )

    async def serve_until(self, stop: asyncio.Event) -> None:
        """Return when ``stop`` is set; raise if the background loops ended on their own first
        (`LoopFailed`: the consumer loop failed)."""
        assert self._loop is not None, "start() first"
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({stopping, self._loop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if self._loop.done() and not stop.is_set():
            self._loop.result()  # raises what killed the loop
            raise RuntimeError("the background loops ended unexpectedly")

    async def stop(self) -> None:
        """Bounded graceful shutdown (see the module docstring); safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        if self._slots is not None and self._supervisor is not None and self._loop is not None:
            self._supervisor.request_stop()  # also ends a restart backoff at once
            grace_s = self.settings.shutdown_grace_s + self.settings.block_ms / 1000
            await _finish(self._loop, grace_s, self._slots)
            await self._hand_back()
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.stop)  # blocking: off the event loop
        if self._fetcher is not None:
            await self._fetcher.aclose()
        await self._close_clients()
        log.info("scraper stopped")

    async def _hand_back(self) -> None:
        """Make this worker's pending entries claimable by others now (bounded, never raises)."""
        if self._store is None:
            return
        try:
            async with asyncio.timeout(self.settings.redis_timeout_s * 2):
                count = await self._store.hand_back(
                    self.consumer_name, 2 * self.settings.reclaim_idle_ms
                )
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("could not hand back pending entries (%s); they are reclaimed later", exc)
            return
        if count:
            log.info("handed back %d pending runs entries to the other workers", count)

    async def _close_clients(self) -> None:
        if self._redlock is not None:
            await self._redlock.aclose()  # bounded by its close timeout
            self._redlock = None
        for client in [*self._lock_clients, *([self._redis] if self._redis else [])]:
            with contextlib.suppress(Exception):
                await client.aclose()
        self._lock_clients, self._redis = [], None


async def _finish(loop: asyncio.Task[None], grace_s: float, slots: Slots) -> None:
    """Let the loop end within ``grace_s``, then cancel it; never raises."""
    done, _ = await asyncio.wait({loop}, timeout=grace_s)
    if not done:
        log.warning("cancelling %d run(s) still going after the grace period", slots.running())
        loop.cancel()
        await asyncio.wait({loop}, timeout=CANCEL_WAIT_S)
    if loop.done() and not loop.cancelled() and loop.exception() is not None:
        log.error("the background loops had failed", exc_info=loop.exception())


async def _connect_state(s: ScraperSettings) -> Redis:
    # Reads block for block_ms, so the socket deadline must be longer than that.
    topology = s.state_topology()
    try:
        return await connect_state(topology, s.redis_timeout_s + s.block_ms / 1000)
    except (RedisError, RedisClusterException, OSError) as exc:
        where = f"({topology.describe()})"
        message = unreachable_message("state Redis", where, "SCRAPER_STATE_REDIS_*", exc)
        raise StartupError(message) from exc


async def _connect_lock_masters(
    urls: list[str], timeout_s: float, tls: TlsFiles | None = None
) -> list[Redis]:
    """A client per master; a majority must answer now (with a supported version)."""
    replies = await asyncio.gather(
        *[connect_checked(url, timeout_s, tls=tls) for url in urls], return_exceptions=True
    )
    clients: list[Redis] = []
    failed = [r for r in replies if isinstance(r, BaseException)]
    for url, reply in zip(urls, replies, strict=True):
        if isinstance(reply, BaseException):
            log.warning("lock master %s unreachable at start-up: %s", redact_url(url), reply)
            clients.append(make_client(url, timeout_s, tls=tls))
        else:
            clients.append(reply)
    unsupported = [r for r in failed if isinstance(r, UnsupportedServerError)]
    quorum = len(urls) // 2 + 1
    if unsupported or len(urls) - len(failed) < quorum:
        for client in clients:
            await client.aclose()
        if unsupported:
            raise unsupported[0]
        first = next(
            (url, r) for url, r in zip(urls, replies, strict=True) if isinstance(r, BaseException)
        )
        detail = unreachable_message(
            "lock master", redact_url(first[0]), "SCRAPER_LOCK_REDIS_URLS", first[1]
        )
        raise StartupError(
            f"only {len(urls) - len(failed)} of {len(urls)} lock masters answered; "
            f"the scraper needs {quorum}; first failure: {detail}"
        )
    return clients


async def _connect_redlock(redlock: Redlock) -> None:
    try:
        await redlock.connect()  # each connect is bounded by the client's connect timeout
    except QuorumUnavailable as exc:
        raise StartupError(f"lock masters unreachable: {exc}") from exc


def _limit_defaults(s: ScraperSettings) -> LimitDefaults:
    return LimitDefaults(
        start_deadline_s=s.start_deadline_s,
        run_timeout_s=s.run_timeout_s,
        max_pages=s.max_pages_per_run,
        max_bytes=s.max_bytes_per_run,
        per_host_concurrency=s.per_host_concurrency,
        per_host_delay_ms=s.per_host_delay_ms,
    )


def _fetch_limits(s: ScraperSettings) -> FetchLimits:
    return FetchLimits(
        timeout_s=s.fetch_timeout_s,
        max_redirects=s.max_redirects,
        max_response_bytes=s.max_response_bytes,
        user_agent=s.user_agent,
        allow_private_targets=s.allow_private_targets,
    )


async def serve(settings: ScraperSettings) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = ScraperServer(settings)
    await server.start()
    try:
        await server.serve_until(stop)
    finally:
        await server.stop()
