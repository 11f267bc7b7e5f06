"""Run path benchmark: the Markdown tables and ratios it prints."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.run_path_common import Result


def cpu_breakdown(result: Result) -> str:
    parts = []
    locks = sum(v for k, v in result.cpu_ms.items() if k.startswith("lock"))
    for name, value in result.cpu_ms.items():
        if not name.startswith("lock"):
            parts.append(f"{name} {result.per_run(value):.2f}")
    if any(k.startswith("lock") for k in result.cpu_ms):
        parts.append(f"lock masters {result.per_run(locks):.2f}")
    return ", ".join(parts)


def commands(result: Result) -> str:
    split = result.state_cmds
    if "top-level" in split or "in scripts" in split:
        text = (
            f"{result.per_run(split['top-level']):.1f} top-level + "
            f"{result.per_run(split['in scripts']):.1f} in scripts"
        )
        if result.lock_split:
            lock = result.lock_split
            text += (
                f"; lock master 0: {result.per_run(lock['top-level']):.1f} top-level + "
                f"{result.per_run(lock['in scripts']):.1f} in scripts"
            )
        return text
    total = sum(split.values())
    scripts = split["evalsha"] + split["eval"] + split["fcall"]
    text = f"{result.per_run(total):.1f} (of which {result.per_run(scripts):.1f} EVALSHA)"
    if result.lock_cmds:
        text += "; per lock master " + " / ".join(
            f"{result.per_run(n):.1f}" for n in result.lock_cmds
        )
    return text


def round_trips(result: Result) -> str:
    text = f"state {result.per_run(result.state_reads):.1f}"
    if result.lock_reads:
        each = " / ".join(f"{result.per_run(n):.1f}" for n in result.lock_reads)
        text += f"; lock masters {each}"
    return text


def print_table(results: list[Result]) -> None:
    print(
        "| variant | runs/s | last start after due | ok | CPU ms per run (all) "
        "| CPU ms per run per process | state Redis commands per run "
        "| round trips per run (server socket reads) |"
    )
    print("|---|---:|---:|---:|---:|---|---|---|")
    for r in results:
        note = f" ({r.note})" if r.note else ""
        print(
            f"| {r.name}{note} | {r.rate:,.0f} | {r.last_start_s:.2f} s | {r.ok} "
            f"| {r.per_run(sum(r.cpu_ms.values())):.2f} | {cpu_breakdown(r)} | {commands(r)} "
            f"| {round_trips(r)} |"
        )
    print()
    print(
        "| variant | window | page server CPU per run (not above) "
        "| CPU of other processes in the window | passes |"
    )
    print("|---|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r.name} | {r.window_ms / 1000:.1f} s | {r.per_run(r.page_cpu_ms):.2f} ms "
            f"| {r.other_ms:,.0f} ms ({100 * r.other_share:.0f} % of a core) | {r.attempts} |"
        )


def print_ratios(results: list[Result]) -> None:
    """Ours against each arq variant doing the same fetch + extract."""
    peers = [r for r in results if r.name.startswith("arq, the same fetch")]
    if not any(r.name.startswith("ours") for r in results):
        return
    for peer in peers:
        print()
        print(f"| ours / {peer.name} | runs/s | last start, ours - arq | CPU per run |")
        print("|---|---:|---:|---:|")
        peer_cpu = peer.per_run(sum(peer.cpu_ms.values()))
        for r in results:
            if not r.name.startswith("ours"):
                continue
            cpu = r.per_run(sum(r.cpu_ms.values()))
            print(
                f"| {r.name} | {r.rate / peer.rate:.2f}x "
                f"| {r.last_start_s - peer.last_start_s:+.2f} s | {cpu / peer_cpu:.2f}x |"
            )


def print_cluster_ratios(results: list[Result]) -> None:
    """Each cluster variant against the single-node variant with as many scrapers."""
    pairs = [
        (single, clustered)
        for clustered in results
        if clustered.name.endswith(", 3-master cluster")
        for single in results
        if single.name == clustered.name.removesuffix(", 3-master cluster")
    ]
    if not pairs:
        return
    print("\n| cluster / single node | runs/s | last start, cluster - single | CPU per run |")
    print("|---|---:|---:|---:|")
    for single, clustered in pairs:
        single_cpu = single.per_run(sum(single.cpu_ms.values()))
        cpu = clustered.per_run(sum(clustered.cpu_ms.values()))
        print(
            f"| {clustered.name} | {clustered.rate / single.rate:.2f}x "
            f"| {clustered.last_start_s - single.last_start_s:+.2f} s | {cpu / single_cpu:.2f}x |"
        )
