"""Shared library of the campaign platform: what both services and the gateway agree on.

By noun: `runs` (every run key and script, the run log, emission, retries, dead letters, run
limits), `redlock` (the lock client over the lock masters), `localstack` (embedded Redis and
the local stack), `cli` (the `campaigns` command), `observability` (logs, traces, metrics);
at the top, event envelopes, settings, the Redis client, supervision and `errors` (the one
error root). The services never import each other; everything they share lives here.
"""
