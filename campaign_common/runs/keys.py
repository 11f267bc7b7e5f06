"""Every key name of the run family in the state Redis, and the hash tag they share.

This module is the one owner of those names: the scheduler, the scraper, the run log, the
retry queue and the dead letters build run keys here only. Every key carries the ``{runs}``
hash tag (`HASH_TAG`, applied by `_tagged` alone), so each script touches a single Redis
Cluster slot, and partitioning the runs by hash tag later changes this module only.

Keys
    {runs}:requests              stream of RunRequested envelopes (consumer group ``scrapers``)
    {runs}:events                stream of run lifecycle envelopes (RunStarted, RunSucceeded...;
                                 consumer group ``schedulers``)
    {runs}:dead                  stream of RunDeadLettered envelopes; the entry id is the dead
                                 letter's id (`campaign_common.runs.deadletters`)
    {runs}:delayed               sorted set: run id -> epoch ms when its next attempt is due
    {runs}:delayed:requests      hash: <run id> -> RunRequested body of the next attempt;
                                 <run id>:tp, <run id>:ts -> its traceparent, tracestate
                                 (`campaign_common.runs.retryqueue`)
    {runs}:dedupe:<run_id>       emission dedupe marker, TTL > any catch-up window
    {runs}:run:<run_id>          hash: the run projection (TTL `run_ttl_ms`)
    {runs}:idx:all|schedule:<id>|campaign:<id>
                                 sorted sets (score 0) of ``<scheduled_for_ms:013d>|<run_id>``,
                                 so a reverse lexicographic range is "newest first"; members
                                 older than the run TTL are pruned at each emission, and the
                                 key expires one run TTL after its newest run
    {runs}:results:<campaign_id> list of ScrapeResult protobufs, newest first, capped
    {runs}:emitted:<schedule_id> scheduled runs emitted so far (kept only for capped schedules)
    {runs}:guard:<schedule_id>   hash version, active: the schedule as the scheduler's command
                                 path stored it; scheduled emissions are checked against it
                                 (`campaign_common.runs.emission`)
    {runs}:fence:<campaign_id>   highest lock fencing token that wrote for the campaign
    {runs}:written:<run_id>:<attempt>
                                 marker: that attempt's results are stored (TTL = run TTL), so
                                 an attempt re-run after a crash never stores them twice
    {runs}:op:<op_id>            a re-sendable script's stored reply
                                 (`campaign_common.runs.opscript`)
"""

from __future__ import annotations

from campaign_common.runs.opscript import new_op_id, op_key

HASH_TAG = "runs"


def _tagged(name: str) -> str:
    return f"{{{HASH_TAG}}}:{name}"


RUNS_STREAM = _tagged("requests")
RUN_EVENTS_STREAM = _tagged("events")
DEAD_LETTER_STREAM = _tagged("dead")
DELAYED = _tagged("delayed")
DELAYED_REQUESTS = _tagged("delayed:requests")
INDEX_ALL = _tagged("idx:all")

# The consumer groups: scrapers on the runs stream, schedulers on the run events stream.
SCRAPER_GROUP = "scrapers"
OUTCOME_GROUP = "schedulers"


def run_key(run_id: str) -> str:
    return _tagged(f"run:{run_id}")


def dedupe_key(run_id: str) -> str:
    return _tagged(f"dedupe:{run_id}")


def schedule_index(schedule_id: str) -> str:
    return _tagged(f"idx:schedule:{schedule_id}")


def campaign_index(campaign_id: str) -> str:
    return _tagged(f"idx:campaign:{campaign_id}")


def emitted_key(schedule_id: str) -> str:
    return _tagged(f"emitted:{schedule_id}")


def guard_key(schedule_id: str) -> str:
    return _tagged(f"guard:{schedule_id}")


def campaign_fence_key(campaign_id: str) -> str:
    return _tagged(f"fence:{campaign_id}")


def written_key(run_id: str, attempt: int) -> str:
    return _tagged(f"written:{run_id}:{attempt}")


def results_key(campaign_id: str) -> str:
    return _tagged(f"results:{campaign_id}")


def new_op_key() -> str:
    """A fresh operation key in the runs slot, for one call of a re-sendable script."""
    return op_key(HASH_TAG, new_op_id())


def index_member(scheduled_for_ms: int, run_id: str) -> str:
    """A run's member in the run indexes: newest first in a reverse lexicographic range."""
    return f"{scheduled_for_ms:013d}|{run_id}"
