"""Redlock over N independent Redis masters, with fencing tokens and auto-extension.

This package owns the lock algorithm, described here once: `client` (acquisition, release,
extension, the fencing token), `quorum` (one script over every master, decided at quorum),
`hold` (the auto-extending ``hold`` context), `lease`, `orphans` (failed attempts' tokens
that the next attempt takes over), `stats` (per-attempt statistics) and
`errors` (the typed errors). Key names and Lua scripts live in `campaign_common.redlock.scripts`;
the connection to each master in `campaign_common.redlock.channel` (the interface),
`pipelined_node` and `redis_py_node` (its two implementations) and `connect_params`.

Usage::

    redlock = Redlock([client_a, client_b, client_c])      # redis.asyncio clients
    async with redlock.hold("campaign:42", ttl_ms=10_000, max_lease_s=600) as lease:
        await write_results(fence=lease.fence)             # the body is cancelled if lost
    await redlock.aclose()

Acquisition (one attempt), on our monotonic clock (``time.monotonic``)::

    t0   a fresh token (16 random bytes of os.urandom, `tokens`, new for every attempt) and the
         ACQUIRE script go to every master at once: SET NX PX ttl, then INCR the resource's
         fence counter (and raise it above ``fence_floor``, see below)
    ...  replies arrive; each master has a per-node timeout, min(node_timeout_s, ttl / 10)
    t1   a quorum (N//2 + 1) granted -> decide now, do not wait for the others; or so many
         refused/failed/timed out that a quorum is impossible -> the attempt failed
    t2   only if the granting counters disagree: CONFIRM_FENCE (raise counter to the fence,
         check the token still holds the key) on every master, until a quorum confirms
         validity = ttl - (t2 - t0) - drift, drift = ttl * drift_factor + drift_fixed_ms
         validity <= 0 -> release everywhere, the attempt failed (a late lock is never returned)
    fail partial keys are released (compare-and-delete, awaited under the node timeout) on every
         master that granted or failed, before the next attempt or the error; retries are
         bounded (retry_count) and spaced by a random delay in [0.5, 1.5] x retry_delay_ms
    late a reply that arrives after the decision is still handled: a grant to a failed attempt is
         released at once, a lagging fence counter of a won attempt is raised (background, no
         task: the requests ride the masters' pipelines, which ``aclose`` drains; on the
         pipelined transport a release sent after a grant also executes after it)
    own  until a failed attempt's masters have all answered and its releases are confirmed, its
         token is an orphan (`orphans`): the next attempt on the resource, a retry or a later
         call of this client, passes it to ACQUIRE, which takes such a key over instead of
         counting it as another owner's

Why a fresh token for every attempt: a failed attempt's replies, and the releases they trigger,
can reach a master after the next attempt's ACQUIRE (a master answered after the node timeout).
With one token for all attempts, attempt 1's late ACQUIRE would set the key that attempt 2's
ACQUIRE then merely refreshes (same token), and attempt 1's late compare-and-delete would then
delete the key of the lease attempt 2 returned: that lease would be short of a quorum while
looking valid, and a second client could take the lock inside its validity. With a token per
attempt every late reply, release and refresh matches only its own attempt's key.

Why orphans are taken over: a failed attempt's grant can land after the attempt gave up (its
request timed out on our side but ran on the master) and stay until its late reply comes back
and the release it triggers has run. A retry meeting that key would count the master as held by
another owner and could fail with `LockHeld` although only this client ever held the resource.
ACQUIRE therefore replaces a key that holds one of the resource's orphan tokens with the new
attempt's token and TTL, exactly as if it had been free: no lease was ever returned for an
orphan token, so nobody relies on that key, and the orphan's late compare-and-delete no longer
matches. The grant still happens at a time >= the new attempt's t0, so validity and fencing
below hold unchanged.

Why a returned lease is exclusive: every granting master set its key at some time >= t0, so
(assumption A1 below) each key lives at least until t0 + ttl - drift = t2 + validity on our
clock, and a quorum of masters hold our token until then; two quorums always share a master,
and a master holds one token at a time, so no other client can hold a quorum in that window.
``Lease.expires_at`` is t0 + (ttl - drift) / 1000 on the monotonic clock.

Fencing token. Each master keeps a counter per resource that only grows. ACQUIRE increments it
(and then raises it to ``fence_floor`` + 1 if it is not above the floor) in the same script that
sets the lock, so the value a master returns was written while our token held that master's key.
The fence is the maximum over the granting quorum. If all of the quorum returned that same
value, every master of the quorum already stores the fence and the lease is issued at once (the
common case: masters see the same acquisitions, so their counters move in step). Otherwise
CONFIRM_FENCE raises the counter to the fence on every master and counts the masters where our
token still holds the key; the fence is issued only once a quorum has confirmed. Either way, at
issue time a quorum W of masters stores a counter >= fence, written while we held their keys.
Why the next holder B gets a larger fence than ours (A): W_A and B's granting quorum share a
master m. On m the two holds are disjoint (SET NX). If B's hold on m came after A's, B's INCR
ran after A's counter write, so B's fence > A's. B's hold on m cannot have come first: B's key
on m would have had to vanish before A held m, i.e. before A's issue time, yet B's validity says
that key outlived B's issue time, which comes after A's. A restarted master that lost its
counters comes back lower than the others; the next grant it takes part in disagrees, which
triggers CONFIRM_FENCE on every master and heals it.

Fence floor (how assumption A3 is relaxed). When more masters lose their data than A3 allows
(all of them restarted without persistence, a FLUSHALL), their counters start again at 1, and a
protected store that refuses fences below the highest it accepted would refuse every later
holder for good. So ``acquire``/``hold`` take ``fence_floor``: the caller passes the highest
fence its protected store accepted, and ACQUIRE makes every granting master's counter at least
floor + 1, so the fence issued (the maximum over the quorum) is > floor and the store accepts it.
Monotonicity is untouched: a floor only ever raises a counter, never lowers one, so every step
of the proof above holds as written (counters only grow; B's counter write on the shared master
comes after A's and yields more than A's fence), whatever floor a caller passes (0, stale or too
low: no effect). The raised value is stored, so it heals the wiped masters: later acquisitions,
with or without a floor, continue above it, and masters the floor did not reach are raised by
CONFIRM_FENCE or the late-reply healing like any lagging counter. What a floor cannot restore:
a fence issued before the loss that never reached the store can be issued again after it. Its
holder's lease was either live at the loss (the A2 window, in which exclusion is at risk anyway)
or had expired while the holder was paused (A4); such a holder's writes carry the same fence
as the new holder's and are accepted until a later holder writes with a higher fence.

Assumptions:

- A1 clocks: the masters' and this process's clocks advance at rates that differ by at most
  ``drift_factor`` (default 1 %), and key expiry may be early by at most ``drift_fixed_ms``
  (default 2 ms: Redis expires with millisecond resolution). Clocks are never stepped (slew
  only); a master whose clock jumps can expire keys early.
- A2 masters: independent (no replication between them). A master that restarts without its
  data should stay down for at least the longest TTL in use (the usual Redlock advice),
  otherwise mutual exclusion can be broken during that window.
- A3 fences increase from lease to lease as long as a majority of masters keeps its data: at
  any moment at most N - quorum masters may have lost their counters since an acquisition last
  reached them. Counter keys expire ``fence_ttl_ms`` after their last grant (0: never; why
  that keeps fences monotonic with the state's floor: `campaign_common.runs.writer`). Relaxed by
  ``fence_floor`` (above): when more masters lose their data, a caller that passes the highest
  fence its store accepted still gets fences above it, so a wipe never blocks a resource.
- A4 the process: a holder that is paused longer than its validity (GC, SIGSTOP) loses
  exclusivity silently, as with every lease; that is what the fence is for. ``hold`` cancels
  its body when an extension fails, but only a fenced write is safe against such a pause.

Release is compare-and-delete on every master in parallel; a lease that had already expired is
logged once at debug level (``strict=True`` raises `LeaseLost`). Extension is compare-and-PEXPIRE
on every master, succeeding when a quorum confirms before the old lease expires; the validity is
recomputed from the extension's own start. ``hold`` extends every ttl/3 in a background task; when
an extension fails or ``max_lease_s`` is reached it cancels the body and the ``async with``
raises `LeaseLost` with the reason, whatever the body did with the cancellation.
"""
