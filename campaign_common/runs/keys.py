"""Every key name of the run family in the state Redis, and how runs are partitioned.

This module is the one owner of those names: the scheduler, the scraper, the run log, the
retry queue and the dead letters build run keys here only.

Partitions. Runs are spread over ``P`` partitions (`Partitions`, P a setting of every service
that touches runs, the same everywhere). A campaign belongs to one partition,
``crc32(campaign_id) mod P``, and every key of its runs, its schedules' emission keys, its
fence and its results carry that partition's hash tag ``{runs:<p>}`` (applied by
`Partition.key` alone). So each script touches one Redis Cluster slot, and the P partitions
spread over the cluster's masters. The campaign is the unit because its fence (checked with
every worker write of every run of the campaign, whatever the schedule) must sit in the same
slot as those writes. P is fixed for a deployment: changing it moves campaigns to other
partitions, so drain the runs streams first (docs/operations.md).

Keys of partition p (``{runs:<p>}``)
    requests              stream of RunRequested envelopes (consumer group ``scrapers``)
    events                stream of run lifecycle envelopes (RunStarted, RunSucceeded...;
                          consumer group ``schedulers``)
    dead                  stream of RunDeadLettered envelopes; ``<p>-<entry id>`` is the dead
                          letter's id (`campaign_common.runs.deadletters`)
    delayed               sorted set: run id -> epoch ms when its next attempt is due
    delayed:requests      hash: <run id> -> RunRequested body of the next attempt;
                          <run id>:tp, <run id>:ts -> its traceparent, tracestate
                          (`campaign_common.runs.retryqueue`)
    dedupe:<run_id>       emission dedupe marker, TTL > any catch-up window
    run:<run_id>          hash: the run projection (TTL: the run retention)
    idx:all|schedule:<id>|campaign:<id>
                          sorted sets (score 0) of ``<scheduled_for_ms:013d>|<run_id>``, so a
                          reverse lexicographic range is "newest first"; members older than
                          the run retention are pruned at each emission, and the key expires
                          one retention after its newest run. ``idx:all`` is per partition;
                          a list of every run merges the partitions' pages.
    results:<campaign_id> list of ScrapeResult protobufs, newest first, capped; expires one run
                          retention after its newest write
    emitted:<schedule_id> scheduled runs emitted so far (kept only for capped schedules; one
                          per existing capped schedule: deleted with the schedule)
    guard:<schedule_id>   hash version, active: the schedule as the scheduler's command path
                          stored it; scheduled emissions are checked against it
                          (`campaign_common.runs.emission`)
    fence:<campaign_id>   highest lock fencing token that wrote for the campaign; expires one run
                          retention after the campaign's last fenced write (why that keeps
                          fences monotonic: `campaign_common.runs.writer`)
    written:<run_id>:<attempt>
                          marker: that attempt's results are stored (TTL = run retention), so
                          an attempt re-run after a crash never stores them twice
    op:<op_id>            a re-sendable script's stored reply (`campaign_common.runs.opscript`;
                          TTL: the services' operation TTL, 1 hour)

Retention. Every key above is bounded: the streams are trimmed behind their consumer groups
(`campaign_common.runs.retention`), the delay queue holds one member per waiting retry, the
guards one per schedule (a deleted one's tombstone expires), and every per-run or
per-campaign key expires one run retention (``RUN_RETENTION_MS`` by default; the services'
``*_RUN_RETENTION_S``, the same in both) after its last write. docs/operations.md has the
table.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from redis.asyncio import Redis

from campaign_common.errors import CampaignCommonError
from campaign_common.runs.opscript import new_op_id, op_key

HASH_TAG_PREFIX = "runs"
# How long a run's keys outlive its last change by default (SCHEDULER_RUN_RETENTION_S and
# SCRAPER_RUN_RETENTION_S, which must be the same).
RUN_RETENTION_MS = 14 * 24 * 3600 * 1000
# The services' default partition count (SCHEDULER_PARTITIONS, SCRAPER_PARTITIONS).
DEFAULT_PARTITIONS = 4

# The consumer groups: scrapers on the runs streams, schedulers on the run events streams.
SCRAPER_GROUP = "scrapers"
OUTCOME_GROUP = "schedulers"


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition's key names (streams precomputed: they are used on every run)."""

    index: int
    tag: str = field(init=False)
    runs_stream: str = field(init=False)
    events_stream: str = field(init=False)
    dead_stream: str = field(init=False)
    delayed: str = field(init=False)
    delayed_requests: str = field(init=False)
    index_all: str = field(init=False)

    def __post_init__(self) -> None:
        tag = f"{HASH_TAG_PREFIX}:{self.index}"
        object.__setattr__(self, "tag", tag)
        for name, suffix in (
            ("runs_stream", "requests"),
            ("events_stream", "events"),
            ("dead_stream", "dead"),
            ("delayed", "delayed"),
            ("delayed_requests", "delayed:requests"),
            ("index_all", "idx:all"),
        ):
            object.__setattr__(self, name, self.key(suffix))

    def key(self, name: str) -> str:
        return f"{{{self.tag}}}:{name}"

    def run_key(self, run_id: str) -> str:
        return self.key(f"run:{run_id}")

    def dedupe_key(self, run_id: str) -> str:
        return self.key(f"dedupe:{run_id}")

    def schedule_index(self, schedule_id: str) -> str:
        return self.key(f"idx:schedule:{schedule_id}")

    def campaign_index(self, campaign_id: str) -> str:
        return self.key(f"idx:campaign:{campaign_id}")

    def emitted_key(self, schedule_id: str) -> str:
        return self.key(f"emitted:{schedule_id}")

    def guard_key(self, schedule_id: str) -> str:
        return self.key(f"guard:{schedule_id}")

    def fence_key(self, campaign_id: str) -> str:
        return self.key(f"fence:{campaign_id}")

    def written_key(self, run_id: str, attempt: int) -> str:
        return self.key(f"written:{run_id}:{attempt}")

    def results_key(self, campaign_id: str) -> str:
        return self.key(f"results:{campaign_id}")

    def new_op_key(self) -> str:
        """A fresh operation key in this partition's slot, for one call of a re-sendable
        script."""
        return op_key(self.tag, new_op_id())


@functools.cache
def partition(index: int) -> Partition:
    """Partition ``index`` (one shared object per index: its names are built once)."""
    return Partition(index)


class Partitions:
    """The P partitions of a deployment, and which one a campaign belongs to."""

    def __init__(self, count: int = 1) -> None:
        if count < 1:
            raise ValueError(f"the partition count must be at least 1, not {count}")
        self.count = count
        self.all: tuple[Partition, ...] = tuple(partition(index) for index in range(count))

    def __iter__(self) -> Iterator[Partition]:
        return iter(self.all)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> Partition:
        return self.all[index]

    def of(self, campaign_id: str) -> Partition:
        """The partition of a campaign: of every run, schedule key, fence and result of it."""
        if self.count == 1:
            return self.all[0]
        return self.all[zlib.crc32(campaign_id.encode()) % self.count]

    def group(self, campaign_ids: Iterable[str]) -> dict[Partition, list[int]]:
        """The positions of ``campaign_ids``, grouped by partition (batches stay in a slot)."""
        grouped: dict[Partition, list[int]] = {}
        for position, campaign_id in enumerate(campaign_ids):
            grouped.setdefault(self.of(campaign_id), []).append(position)
        return grouped


def index_member(scheduled_for_ms: int, run_id: str) -> str:
    """A run's member in the run indexes: newest first in a reverse lexicographic range."""
    return f"{scheduled_for_ms:013d}|{run_id}"


# The partition count the deployment's runs were written with (a plain string key: it is
# read once per process start-up, alone). Every scheduler and scraper checks it at start-up.
PARTITION_COUNT_KEY = "{runs:meta}:partitions"


class PartitionCountMismatch(CampaignCommonError):
    """This process was configured with another partition count than the deployment's."""


async def check_partition_count(redis: Redis, partitions: Partitions, setting: str) -> None:
    """Record the deployment's partition count on first use; refuse another one later.

    A process with another count would read and write other streams than the rest of the
    deployment (a scraper would never see some runs), so it must not start.
    """
    await redis.set(PARTITION_COUNT_KEY, partitions.count, nx=True)
    stored = int(await redis.get(PARTITION_COUNT_KEY) or partitions.count)
    if stored != partitions.count:
        raise PartitionCountMismatch(
            f"{setting}={partitions.count}, but this deployment's runs use {stored} partitions "
            f"({PARTITION_COUNT_KEY} in the state Redis); set {setting}={stored}, or drain "
            "the runs streams and delete that key to change it (docs/operations.md)"
        )
