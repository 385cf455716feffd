"""What the diagnostics (spectrum, κ₂, gradient-vs-horizon snapshots and the λ monitor) cost in a comparison's
wall time, at each size a user launches.

Each case runs as the user runs it (``runner.run_here``: a store and one worker process per core) with the
diagnostics on and off, alternating (on, off, on, off), and reports

* the wall-time share: (mean wall on − mean wall off) / mean wall on, what a user waits for them;
* the recorded share of the work: the runs' ``diag_seconds`` over their ``wall_seconds`` (the jobs alone,
  without process start-up; it includes the λ monitor, which runs with diagnostics off too);
* the recorded share of the wall time: the runs' ``diag_seconds`` per worker process over the comparison's
  wall time (what the user waits, start-up included, free of the noise between two runs).

    OMP_NUM_THREADS=1 python bench/bench_diagnostics.py [--cases demo,quick,quick-all,paper-300]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ALL = ["none", "pre", "inter", "pre+inter", "adaptive", "joint"]
CASES = {   # name -> (preset, make_spec options)
    "demo": None,                                               # the one-click demo (floss_core.demo)
    "tiny": ("quick", "tiny"),                                  # the Launch page's tiny size
    "quick": ("quick", {}),                                     # the quick preset's default comparison
    "quick-all": ("quick", {"schedules": ALL}),                 # every schedule, quick sizes
    "paper-300": ("paper", {"task": "xor", "delays": [20], "seeds": 9, "steps": 300, "pre_steps": 50}),
    "paper": ("paper", {"task": "xor", "delays": [20], "seeds": 9}),   # the full paper comparison (minutes)
}


def spec_of(case: str, diagnostics: bool):
    from dataclasses import replace

    from floss_core.demo import SIZES, quick_demo_spec
    from floss_core.experiment import make_spec

    if CASES[case] is None:
        spec = quick_demo_spec()
        return replace(spec, train=replace(spec.train, diagnostics=diagnostics))
    preset, opts = CASES[case]
    if opts == "tiny":
        preset, opts = SIZES["tiny"]
    return make_spec(preset, **{**opts, "diagnostics": diagnostics, "device": "cpu"})


def run_once(spec, workers: int) -> tuple[float, float, float]:
    from floss_core import runner
    from floss_core.store import Store

    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "bench.db") as store:
        t0 = time.perf_counter()
        eid = runner.run_here(spec, store, max_workers=workers)
        wall = time.perf_counter() - t0
        recs = runner.stored_records(store, eid)
    return wall, sum(r["diag_seconds"] for r in recs), sum(r["wall_seconds"] for r in recs)


def processes(spec, workers: int) -> int:
    """The worker processes the comparison's jobs ran in (at most one per job)."""
    from floss_core import runner
    from floss_core.experiment import plan

    batch, shards = runner.planned_jobs(spec, "local", workers)
    return max(1, min(workers, len(plan(spec, batch=batch, shards=shards))))


def main() -> None:
    from floss_core import native

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="demo,tiny,quick,quick-all,paper-300")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    native.keep_freed_memory()
    print(f"`{' '.join(['OMP_NUM_THREADS=' + os.environ.get('OMP_NUM_THREADS', '(default)'), 'python'] + sys.argv)}`"
          f" on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print("| case | wall on s | wall off s | (on − off) / on | diag share of the work (on) | (off: the λ monitor) "
          "| diag share of the wall time (on) |")
    print("|---|---|---|---|---|---|---|")
    for case in a.cases.split(","):
        if case not in CASES:
            raise SystemExit(f"unknown case {case!r}; choose from {', '.join(CASES)}")
        got = {True: [], False: []}
        for _ in range(a.reps):
            for diag in (True, False):
                got[diag].append(run_once(spec_of(case, diag), a.workers))
        on = sum(w for w, _, _ in got[True]) / a.reps
        off = sum(w for w, _, _ in got[False]) / a.reps
        rec = {d: sum(x for _, x, _ in got[d]) / sum(y for _, _, y in got[d]) for d in got}
        of_wall = sum(x for _, x, _ in got[True]) / processes(spec_of(case, True), a.workers) / sum(
            w for w, _, _ in got[True])
        print(f"| {case} | {on:.1f} | {off:.1f} | {100 * (on - off) / on:.1f} % | {100 * rec[True]:.1f} % | "
              f"{100 * rec[False]:.1f} % | {100 * of_wall:.1f} % |", flush=True)


if __name__ == "__main__":
    main()
