"""Worker writes for a run: who may write (`Writer`), the checks every such script runs first
(`WRITER_CHECK`, `ATTEMPT_CHECK`, joined once as `WRITE_CHECKS`), and the errors of a refusal.

A worker may write for a run only while it owns the run's entry in the scraper group (a worker
whose entry was taken over, or acked by another, is refused: it lost the run) and, under a
campaign lock, while its fencing token is not lower than the highest one that wrote for the
campaign (a newer lock holder wrote: it lost the lock). Within a run, one outcome per attempt.
Used by the run log (`campaign_common.runs.log`), the retry queue and the dead letters.

Fence expiry. The state's fence ``{runs:<p>}:fence:<campaign>`` is the floor the scraper
passes to every acquisition (`campaign_common.redlock`), and each lock master's counter
``redlock:{campaign:<id>}:fence`` is where fences come from. Neither may grow one key per
campaign ever run, so both expire one run retention R (``*_RUN_RETENTION_S``, 14 days) after
their last refresh: every accepted fenced write refreshes the state's fence, every
acquisition (and fence confirmation) the masters' counters. Why fences stay monotonic for
every campaign that still has live runs: take holders A then B of a campaign (fences f_A,
f_B) and a write of A after B's. (1) B acquired within R of A's acquisition: the counters of
A's quorum were refreshed then and still hold >= f_A on the master both quorums share, so
the lock proof holds as written: f_B > f_A. (2) B acquired within R of A's last accepted
write: the state's fence is still >= f_A, it is B's floor, so f_B > f_A. (3) Otherwise A
was silent for more than R since both: longer than its whole lease may last (the scraper
refuses R <= lock_max_lease_s + reclaim_idle_ms), so A is a holder paused past its
validity (assumption A4) whose run is not live any more: its runs entry went idle and the
first worker alive (B's among them) took it over, so A's write is refused by the entry
check above, whatever its fence. What expiry gives up is only case (3) with no worker
alive for the whole of R, the same class as the masters' data loss the floor cannot
restore. A campaign with a live run is written (or acquired) at least every lease, so its
keys never expire while it runs; a campaign idle for R starts again from fence 1, which
nothing alive holds any more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from campaign_common.errors import CampaignCommonError
from campaign_common.runs.keys import SCRAPER_GROUP, Partition
from campaign_common.runs.opscript import OP_TTL_MS, idempotent

# A token higher than the highest raises it; every accepted token refreshes the fence's
# expiry (``fence_ttl`` ms, the run retention: see the module docstring). Returns false, or
# why the writer is refused.
WRITER_CHECK = """
local function writer_refusal(fence_key, stream, token, group, consumer, entry, fence_ttl)
  if consumer ~= '' then
    local row = redis.call('XPENDING', stream, group, entry, entry, 1)[1]
    if not row or row[2] ~= consumer then return 'entry' end
  end
  if token > 0 then
    local seen = tonumber(redis.call('GET', fence_key) or '0')
    if token < seen then return 'fence' end
    if token > seen then
      redis.call('SET', fence_key, token, 'PX', fence_ttl)
    else
      redis.call('PEXPIRE', fence_key, fence_ttl)
    end
  end
  return false
end
"""

# One outcome per attempt (every script that writes a run's state applies it): a run in a
# final state never changes; a write for an earlier attempt than the run's is refused; once
# an attempt has its outcome (rank FINISHED: final, or failed with the next attempt queued)
# nothing else is accepted for it. Returns false, or why the write is refused ('final',
# 'attempt'), or 'behind' for a write of a lower rank within the open attempt (a deferral
# note after the attempt started somewhere): such an event may be recorded, never applied.
ATTEMPT_CHECK = """
local FINAL_STATES = {SUCCEEDED = true, FAILED = true, SKIPPED = true, DEAD_LETTERED = true}
local function attempt_refusal(run_key, attempt, rank)
  local cur = redis.call('HMGET', run_key, 'attempt', 'rank', 'state')
  if cur[3] and FINAL_STATES[cur[3]] then return 'final' end
  local cur_attempt, cur_rank = tonumber(cur[1]) or 0, tonumber(cur[2]) or -1
  if attempt < cur_attempt then return 'attempt' end
  if attempt == cur_attempt and cur_rank >= 2 then return 'attempt' end
  if attempt == cur_attempt and rank < cur_rank then return 'behind' end
  return false
end
"""

# The prelude of every worker-write script: both checks, as Lua functions its body calls.
WRITE_CHECKS = WRITER_CHECK + ATTEMPT_CHECK


def worker_script(body: str, *, resend_safe: bool = False, op_ttl_ms: int = OP_TTL_MS) -> str:
    """A worker-write script: `WRITE_CHECKS`, then ``body``, which calls them first.

    Made safe to re-send with an operation key (`idempotent`, KEYS[#KEYS], kept ``op_ttl_ms``)
    unless the body is ``resend_safe`` by itself (a marker it sets makes a second run write
    nothing).
    """
    script = WRITE_CHECKS + body
    return script if resend_safe else idempotent(script, op_ttl_ms)


class WriteRefused(CampaignCommonError):
    """A worker's write was refused by the state Redis; nothing was written."""


class Fenced(WriteRefused):
    """A write carried a fencing token lower than one already seen: its lock was lost."""


class EntryLost(WriteRefused):
    """The writer no longer owns the run's runs entry (taken over or acked by another)."""


class AttemptClosed(WriteRefused):
    """The run attempt already has its outcome (or the run is final): a later one is refused."""


_REFUSALS: dict[str, type[WriteRefused]] = {
    "entry": EntryLost,
    "fence": Fenced,
    "final": AttemptClosed,
    "attempt": AttemptClosed,
    "behind": AttemptClosed,
}


_REFUSAL_REASONS = {
    "entry": "its runs entry is no longer this worker's",
    "fence": "its fencing token is stale (a newer lock holder wrote)",
    "final": "the run is final already",
    "attempt": "the attempt has its outcome already (or a later attempt started)",
    "behind": "the attempt is past this step",
}


def refusal(reply: Any, what: str) -> WriteRefused | None:
    """The error for a script's ``{0, why}`` reply (None for a ``{1, ...}`` or ``{2}``)."""
    if int(reply[0]) != 0:
        return None
    why = reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1])
    return _REFUSALS[why](f"{what}: refused, {_REFUSAL_REASONS[why]}; nothing written")


@dataclass(frozen=True)
class Writer:
    """What a worker's write for a run claims, checked by the writing script.

    ``fence`` is the campaign lock's fencing token (0: not under a lock); ``consumer`` must own
    ``entry_id`` in the scraper group ("": no entry check, for writers outside the group).
    ``Writer(campaign_id)`` alone checks nothing (tests, operators' writes).
    """

    campaign_id: str
    fence: int = 0
    consumer: str = ""
    entry_id: str = ""

    def keys(self, partition: Partition) -> list[str]:
        """The campaign fence key and the runs stream of the campaign's partition, in the
        order the scripts take them."""
        return [partition.fence_key(self.campaign_id), partition.runs_stream]

    def args(self) -> list[str | int]:
        return [self.fence, SCRAPER_GROUP, self.consumer, self.entry_id]
