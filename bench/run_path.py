"""Run path benchmark: N one-shot runs due at one instant, ours side by side with arq.

    .venv/bin/python bench/run_path.py [--runs 2000] [--scrapers 1,2,4] [--only ...]

Every variant gets a fresh embedded stack (`EmbeddedStack`: state Valkey + 3 lock masters on
loopback) and uses the same page server (a separate process, `bench/run_path.py pages`): each
run fetches one page and extracts one field (``.price``) from it.

- ``ours-e2e-K``: one ``python -m scheduler_svc`` and K ``python -m scraper_svc`` processes;
  N schedules are created over gRPC (AddScheduledCampaign, one-shot ``run_at``, one campaign
  each) all due at the same instant, a few seconds ahead; the scheduler fires them.
- ``ours-e2e-processes``: one scheduler and one ``python -m scraper_svc`` running P worker
  processes (``SCRAPER_PROCESSES=P``, ``--processes``, default 2); every other variant runs
  one worker process per scraper command.
- ``ours-e2e-cluster-K``: the same on a local 3-master Redis Cluster as the state Redis
  (`tests.local_topologies.LocalCluster`, ``*_STATE_REDIS_MODE=cluster``; its masters have
  append-only files synced on every write, the single node of ``ours-e2e`` has none), with
  the ratio cluster / single node.
- ``ours-drain``: 1 scraper alone draining a filled stream: the scraper is started and
  SIGSTOPped once it is in the consumer group, the N RunRequested entries are appended with
  `RunLog.request_run`, and the clock starts when the scraper is SIGCONTed.
- ``arq-fetch`` / ``arq-noop``: one arq worker (``max_jobs=50``, arq 0.28 on redis-py 5 from
  the peers venv `.venv-peers`, see bench/arq_peer.py) on the same kind of Valkey; the N jobs
  are enqueued with ``_defer_until`` the same instant ahead, doing the same httpx fetch +
  selectolax extraction, or nothing.

Measured between the due instant (the SIGCONT for ``ours-drain``) and the moment every process
has gone quiet after the last run finished: runs/s (N over due -> last finish), the last
start after the due instant, CPU ms per run of every process (utime+stime from /proc, Valkey
servers included), and commands per run on the state Redis and on each lock master (INFO
commandstats deltas, with the bench's own polling taken out; commands run inside scripts are
counted there too). ``--split-runs`` adds a short pass per side under MONITOR (which slows the
server, so it is a separate pass) to split the state Redis commands into top-level commands
(round trips) and calls made inside scripts.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.run_path_common import (
    ARQ_PEER,
    PAGE,
    PEERS_PYTHON,
    Monitor,
    Probe,
    Result,
    cpu_ms,
    machine,
    settle,
    snapshot,
)
from bench.run_path_ours import ours_drain, ours_e2e, server_pids
from bench.run_path_tables import commands, print_cluster_ratios, print_ratios, print_table
from campaign_common.localstack.embedded import EmbeddedStack
from campaign_common.timeutil import now_ms

# -- page server (its own process, shared by every variant) --------------------------------------


class _Page(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real site would allow
    body = PAGE.encode()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        return


class _PageServer(http.server.ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: a client opening 50-100 connections at once
    # overflows it, and a dropped SYN is retried by the kernel after a second, which showed
    # as a rare 1-2 s tail on either side. A real site's backlog is far larger.
    request_queue_size = 1024


def serve_pages() -> None:
    server = _PageServer(("127.0.0.1", 0), _Page)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


@contextmanager
def page_server() -> Iterator[tuple[str, int]]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "pages"], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}/product", proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- measuring ---------------------------------------------------------------------------------


# -- arq ---------------------------------------------------------------------------------------


def peer(*args: str) -> str:
    done = subprocess.run(
        [str(PEERS_PYTHON), str(ARQ_PEER), *args], capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise SystemExit(f"arq_peer {args[0]} failed:\n{done.stderr}")
    return done.stdout


def arq(
    runs: int,
    page: str,
    function: str,
    lead_s: float,
    monitor: bool = False,
    poll_delay_s: float = 0.5,
    around: Callable[[dict[str, int]], AbstractContextManager[object]] = lambda _: nullcontext(),
) -> Result:
    """One arq worker on jobs deferred to one instant; ``around(procs)`` wraps the window."""
    stack = EmbeddedStack(lock_masters=0).start()
    worker = subprocess.Popen(
        [str(PEERS_PYTHON), str(ARQ_PEER), "worker", stack.state.url, str(poll_delay_s)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    probe = Probe(stack.state.url)
    try:
        due_ms = now_ms() + int(lead_s * 1000)
        peer("enqueue", stack.state.url, str(runs), str(due_ms), page, function)
        if now_ms() > due_ms - 300:
            print("  WARNING: enqueueing ran past the due instant; raise --lead", file=sys.stderr)
        time.sleep(max(0.0, (due_ms - now_ms()) / 1000 - 0.3))
        pids = {"arq worker": worker.pid} | server_pids(stack)
        with Monitor(stack.state.url, monitor) as counted, around({"arq worker": worker.pid}):
            probe.reset()
            before = snapshot(pids)
            deadline = time.monotonic() + 120 + runs / 10
            # arq removes a job from its queue (a sorted set) when the job finishes.
            while probe.zcard("arq:queue") and time.monotonic() < deadline:
                time.sleep(0.05)
            settle(pids)
            after = snapshot(pids)
            state, reads = probe.stats()
        done = json.loads(peer("collect", stack.state.url, str(runs)))
        name = f"arq, {'the same fetch + extract' if function == 'fetch' else 'no-op jobs'}"
        if poll_delay_s != 0.5:
            name += f" (poll_delay {poll_delay_s:g} s)"
        return Result(
            name,
            runs,
            done["ok"],
            (done["last_finish"] - due_ms) / 1000,
            (done["last_start"] - due_ms) / 1000,
            {k: after[k] - before[k] for k in after},
            counted.result(probe) or state,
            state_reads=reads,
            note="" if done["found"] == runs else f"{done['found']} results for {runs} jobs",
        )
    finally:
        probe.close()
        worker.terminate()
        worker.wait(timeout=15)
        stack.stop()


def least_disturbed(
    variant: Callable[[], Result], page_pid: int, passes: int, max_other: float
) -> Result:
    """The variant measured again (up to ``passes`` times) while other processes on the
    machine used more than ``max_other`` of a core in its window; the least disturbed pass."""
    best: Result | None = None
    for attempt in range(1, passes + 1):
        before = cpu_ms(page_pid)
        result = variant()
        result.page_cpu_ms = cpu_ms(page_pid) - before
        result.attempts = attempt
        if best is None or result.other_share < best.other_share:
            best = result
        share = f"{100 * result.other_share:.0f} % of a core"
        print(f"  measured {result.name}: other processes {share}", file=sys.stderr)
        if result.other_share <= max_other:
            break
    assert best is not None
    return best


def measure_all(args: argparse.Namespace, only: set[str]) -> tuple[list[Result], list[Result]]:
    """Every variant asked for, then the MONITOR passes; one page server for all of them."""
    lead = args.lead or 3.0 + args.runs / 150
    results: list[Result] = []
    split: list[Result] = []
    with page_server() as (page, page_pid):
        variants = []
        if "ours-e2e" in only:
            variants += [
                partial(ours_e2e, args.runs, int(n), page, lead)
                for n in args.scrapers.split(",")
                if n.strip()
            ]
        if "ours-e2e-processes" in only:
            variants += [
                partial(ours_e2e, args.runs, 1, page, lead, processes=int(n))
                for n in args.processes.split(",")
                if n.strip()
            ]
        if "ours-e2e-cluster" in only:
            variants += [
                partial(ours_e2e, args.runs, int(n), page, lead, cluster=True)
                for n in args.scrapers.split(",")
                if n.strip()
            ]
        if "ours-drain" in only:
            variants.append(partial(ours_drain, args.runs, page))
        for function in ("fetch", "noop"):
            if f"arq-{function}" in only:
                variants.append(partial(arq, args.runs, page, function, lead))
        if "arq-fetch-fast" in only:  # arq polls its queue every 0.5 s by default
            variants.append(partial(arq, args.runs, page, "fetch", lead, poll_delay_s=0.05))
        for variant in variants:
            results.append(least_disturbed(variant, page_pid, args.passes, args.max_other))
        if args.split_runs and "ours-e2e" in only:
            split.append(ours_e2e(args.split_runs, 1, page, 3.0, monitor=True))
        if args.split_runs and "ours-drain" in only:
            split.append(ours_drain(args.split_runs, page, monitor=True))
        if args.split_runs and "arq-fetch" in only:
            split.append(arq(args.split_runs, page, "fetch", 3.0, monitor=True))
    return results, split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--scrapers", default="1,2,4", help="scraper counts of the e2e variant")
    parser.add_argument(
        "--processes", default="2", help="SCRAPER_PROCESSES of the e2e-processes variant"
    )
    parser.add_argument(
        "--only",
        default="ours-e2e,ours-e2e-processes,ours-e2e-cluster,ours-drain,arq-fetch,arq-noop,"
        "arq-fetch-fast",
    )
    parser.add_argument("--lead", type=float, default=0.0, help="s from creation to due (0: auto)")
    parser.add_argument("--passes", type=int, default=3, help="max passes of a disturbed variant")
    parser.add_argument(
        "--max-other", type=float, default=0.1, help="share of a core others may use in a pass"
    )
    parser.add_argument("--split-runs", type=int, default=200, help="MONITOR pass size (0: off)")
    args = parser.parse_args()
    only = {name.strip() for name in args.only.split(",")}
    if not PEERS_PYTHON.exists() and any(name.startswith("arq") for name in only):
        raise SystemExit("no .venv-peers: run `make bench-peers` first")
    print(machine())
    results, split = measure_all(args, only)
    load = os.getloadavg()
    print(f"\n{args.runs} runs per variant, due at one instant; load average after {load[0]:.2f}\n")
    print_table(results)
    print_ratios(results)
    print_cluster_ratios(results)
    print("\nState Redis commands per run by name (INFO commandstats; script calls included):\n")
    for r in results:
        top = ", ".join(
            f"{name} {r.per_run(n):.2f}"
            for name, n in r.state_cmds.most_common()
            if n >= r.runs / 20
        )
        print(f"- {r.name}: {top}")
    if split:
        print(f"\nState Redis commands per run under MONITOR ({args.split_runs} runs):\n")
        print("| variant | commands per run |")
        print("|---|---|")
        for r in split:
            print(f"| {r.name} | {commands(r)} |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["pages"]:
        serve_pages()
    else:
        main()
