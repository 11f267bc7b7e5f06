"""Shared library of the campaign platform: what both services and the gateway agree on.

Event envelopes, the run log (stream names, run projection, results), the embedded Redis
launcher, settings base, logging, telemetry, the Redlock client and the CLI. The services never
import each other; everything they share lives here.
"""
