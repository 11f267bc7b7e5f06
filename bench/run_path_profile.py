"""Where the run path spends its CPU: py-spy on the scheduler and the scraper of bench/run_path.py.

    .venv/bin/python bench/run_path_profile.py [--runs 2000] [--arq] [--out build/bench/profile]

One end-to-end pass of bench/run_path.py (scheduler + 1 scraper, N one-shot schedules due at
one instant; with ``--arq``, the arq worker doing the same fetch + extract) with ``py-spy
record`` (from PyPI; `make bench-peers` puts it in `.venv-peers`) sampling the services for the
measured window. Sampling slows them down, so its figures are not the benchmark's. Writes the
collapsed stacks (``*.txt``, for flame graphs) and prints, per process, the functions with the
largest share of samples: inclusive (the function or anything it calls) and self (its own code).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run_path import arq, page_server
from bench.run_path_common import ROOT
from bench.run_path_ours import ours_e2e

PY_SPY = ROOT / ".venv-peers" / "bin" / "py-spy"


@contextmanager
def recording(out: Path, procs: dict[str, int], rate: int) -> Iterator[None]:
    spy = str(PY_SPY) if PY_SPY.exists() else shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy is missing: run `make bench-peers`")
    recorders = {
        name: subprocess.Popen(
            [
                *(spy, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw"),
                *("--nonblocking", "--output", str(out / f"{name.replace(' ', '-')}.txt")),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in procs.items()
    }
    try:
        yield
    finally:
        for recorder in recorders.values():
            recorder.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for recorder in recorders.values():
            recorder.wait(timeout=30)


def frame_name(frame: str) -> str:
    """``function (path/to/module.py:line)`` -> ``module.py:function``."""
    function, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    return f"{'/'.join(Path(path).parts[-2:])}:{function}" if path else function


def summarise(path: Path, top: int) -> None:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame_name(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    print(f"\n### {path.stem}: {total} samples\n")
    print("| inclusive | function | | self | function |")
    print("|---:|---|---|---:|---|")
    rows = zip(inclusive.most_common(top), own.most_common(top), strict=False)
    for (inc_name, inc), (self_name, self_count) in rows:
        print(
            f"| {100 * inc / total:.1f} % | {inc_name} | "
            f"| {100 * self_count / total:.1f} % | {self_name} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bench" / "profile")
    parser.add_argument("--arq", action="store_true", help="profile the arq worker instead")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("*.txt"):
        old.unlink()
    with page_server() as (page, _):
        variant = partial(arq, function="fetch") if args.arq else partial(ours_e2e, scrapers=1)
        result = variant(
            runs=args.runs,
            page=page,
            lead_s=3.0 + args.runs / 150,
            around=lambda procs: recording(args.out, procs, args.rate),
        )
    print(f"{result.name} under py-spy: {result.rate:.0f} runs/s, {result.ok} ok")
    for path in sorted(args.out.glob("*.txt")):
        summarise(path, args.top)


if __name__ == "__main__":
    main()
