"""Everything about runs in the state Redis.

`keys` owns every run key name and the partitions (``{runs:<p>}`` hash tags); `log` requests
runs, appends their lifecycle events and results (scripts in `log_scripts`) and reads them
back; `emission` makes a run's
emission exactly-once and guarded; `writer` the checks of every worker write; `record` the run
projection; `retryqueue` the delay queue of next attempts; `deadletters` the parked runs;
`opscript` scripts that are safe to re-send; `retention` the trimming of streams behind their
consumer groups.
"""
