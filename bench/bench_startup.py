"""How fast the light entry points start: the CLI's status / cancel and importing the store or the views,
in this working tree vs another checkout (e.g. a git worktree of an older commit), alternating.

    git worktree add /tmp/before 7f60c1e
    OMP_NUM_THREADS=1 python bench/bench_startup.py --before /tmp/before [--reps 5]

Results: bench/RESULTS.md, "Start-up".
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "status (no store)": ["-m", "floss_core", "status", "--store", "/nonexistent/floss.db"],
    "cancel 1 (no store)": ["-m", "floss_core", "cancel", "1", "--store", "/nonexistent/floss.db"],
    "import floss_core.store": ["-c", "import floss_core.store"],
    "import floss_core.views": ["-c", "import floss_core.views"],
}


def seconds(cwd: Path, args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1"},
                   capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", type=Path, required=True, help="another checkout to compare with")
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    times: dict = {}
    for _ in range(a.reps):
        for side, cwd in (("before", a.before), ("now", ROOT)):
            for name, args in CASES.items():
                times.setdefault((name, side), []).append(seconds(cwd, args))
    print("| what | before | now | ratio |\n|---|---|---|---|")
    for name in CASES:
        b, n = statistics.median(times[(name, "before")]), statistics.median(times[(name, "now")])
        print(f"| {name} | {b:.2f} s | {n:.2f} s | **{b / n:.1f}×** |")


if __name__ == "__main__":
    main()
