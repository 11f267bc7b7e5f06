"""Everything about runs in the state Redis: the run log, retries, dead letters, retention.

`log` owns the run keys and scripts, `retryqueue` the delay queue of next attempts,
`deadletters` the parked runs, `opscript` scripts that are safe to re-send, `retention` the
trimming of streams behind their consumer groups.
"""
