"""Cheap flossing proxies (issue 7): fewer exponents or shorter windows, their cost and their effect on
the outcome of the paper's comparison.

    OMP_NUM_THREADS=1 python bench/proxy_study.py                       # d = 40, 9 seeds, ~15-20 min on 2 cores
    OMP_NUM_THREADS=1 python bench/proxy_study.py --delay 40 --seeds 9 --variants k75,k16,k4,L28

Each variant is the paper preset (xor, 3001 steps, pre-flossing 500 steps) with one flossing setting
changed, run as users run it (``compare`` with one worker per core, a temporary store); ``none`` runs
once as the reference. At d = 40 training alone solves no seed (bench/RESULTS.md, README), so what
pre-flossing buys shows directly in the success rate. Prints one markdown table: successes with the
95 % Wilson interval, median convergence step, flossing seconds per network, wall time.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ensemble import table  # noqa: E402
from floss_core import runner  # noqa: E402
from floss_core.experiment import make_spec, summarize  # noqa: E402
from floss_core.store import Store  # noqa: E402

VARIANTS = {  # name -> (schedules, flossing overrides)
    "none": ("none", {}),
    "k75": ("pre", {}),                                   # the paper: k = 75, window 55, transient 16
    "k16": ("pre", {"k": 16}),
    "k4": ("pre", {"k": 4}),
    "L28": ("pre", {"floss_len": 28, "floss_transient": 8}),
}


def run(delay: int, seeds: int, name: str, workers: int) -> dict:
    schedules, over = VARIANTS[name]
    spec = make_spec("paper", task="xor", delays=[delay], seeds=seeds, schedules=[schedules], device="cpu",
                     diagnostics=False, name=name, **over)
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "proxy.db") as store:
        t0 = time.perf_counter()
        eid = runner.run_here(spec, store, max_workers=workers)
        wall = time.perf_counter() - t0
        recs = runner.stored_records(store, eid)
    row = summarize(recs)[0]
    n = len(recs)
    return {"variant": name, "k": spec.floss.k, "window": spec.floss.seq_len, "solved": f"{row['successes']}/{n}",
            "95% interval": f"{row['success_lo']:.2f}-{row['success_hi']:.2f}",
            "median convergence": row["median_convergence"], "final acc": row["final_acc"],
            "flossing s per network": sum(r["floss_seconds"] for r in recs) / n, "wall s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--delay", type=int, default=40)
    ap.add_argument("--seeds", type=int, default=9)
    ap.add_argument("--variants", default="none,k75,k16,k4,L28")
    ap.add_argument("--workers", type=int, default=runner.default_workers())
    a = ap.parse_args()
    rows = []
    for name in a.variants.split(","):
        rows.append(run(a.delay, a.seeds, name.strip(), a.workers))
        print(rows[-1], file=sys.stderr, flush=True)
    print(f"## Cheap flossing proxies: xor, d = {a.delay}, {a.seeds} seeds, paper preset otherwise\n")
    table(rows)


if __name__ == "__main__":
    main()
