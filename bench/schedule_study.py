"""Which flossing schedule pays off on the paper's delayed XOR: none, pre, pre+inter and adaptive (and
adaptive variants), at several delays, the paper's sizes, the same seeds for every schedule.

Each (delay, schedule) cell is one stored comparison run by the engine (``runner.run_here``, one worker
process per core). Reported per cell: seeds solved of n with the 95 % Wilson interval, the median
convergence step of the solved seeds (time to solution in training steps), and the compute per run
(training + flossing seconds, diagnostics excluded; with stop-when-solved, the compute *to solution*: a
solved network stops there, which leaves success and convergence steps unchanged,
tests/test_stop_when_solved.py) and the flossing steps per run.

    OMP_NUM_THREADS=1 python bench/schedule_study.py --delays 20,40,60 --seeds 9 --out bench/schedule_study.jsonl

``--out`` keeps one JSON line per cell; a rerun skips the cells already there. ``--variants`` adds
adaptive variants (threshold/steps/every) for choosing the adaptive defaults, ``--proxies`` pre-flossing's cheap
proxies (k 16, a 28-step window, QR every 2 or 5 steps).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VARIANTS = {   # label -> (schedule, make_spec overrides): the adaptive schedule's knobs
    "adaptive t0.05": ("adaptive", dict(threshold=0.05)),
    "adaptive t0.2": ("adaptive", dict(threshold=0.2)),
    "adaptive 50 steps": ("adaptive", dict(adaptive_steps=50)),
    "adaptive every 200": ("adaptive", dict(every=200)),
}
PROXIES = {    # label -> (schedule, overrides): the cheap proxies of pre-flossing (fewer exponents, a shorter
    #            window, a longer QR interval), the adviser's search space's members
    "pre k 16": ("pre", dict(k=16)),
    "pre window 28": ("pre", dict(floss_len=28, floss_transient=8)),
    "pre QR every 2": ("pre", dict(qr_every=2)),
    "pre QR every 5": ("pre", dict(qr_every=5)),
}


def run_cell(delay: int, schedule: str, seeds: int, overrides: dict, stop: bool, workers: int) -> dict:
    from floss_core import runner
    from floss_core.experiment import make_spec
    from floss_core.stats import success_rate
    from floss_core.store import Store

    spec = make_spec("paper", task="xor", delays=[delay], seeds=seeds, schedules=[schedule],
                     stop_when_solved=stop, device="cpu", **overrides)
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "study.db") as store:
        t0 = time.perf_counter()
        eid = runner.run_here(spec, store, max_workers=workers)
        wall = time.perf_counter() - t0
        recs = runner.stored_records(store, eid)
    wins = sum(bool(r["success"]) for r in recs)
    rate, lo, hi = success_rate(wins, len(recs))
    conv = [r["convergence_step"] for r in recs if r["success"]]
    return {"delay": delay, "schedule": schedule, "overrides": overrides, "stop_when_solved": stop,
            "n": len(recs), "successes": wins, "success_rate": rate, "ci_low": lo, "ci_high": hi,
            "median_convergence": statistics.median(conv) if conv else None,
            "convergence_steps": [r["convergence_step"] for r in recs],
            "compute_s_per_run": statistics.mean(r["train_seconds"] + r["floss_seconds"] for r in recs),
            "floss_s_per_run": statistics.mean(r["floss_seconds"] for r in recs),
            "floss_steps_per_run": statistics.mean(r["final"].get("floss_steps", 0) for r in recs),
            "diverged": sum(r["status"] == "diverged" for r in recs), "wall_s": wall,
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def table(rows: list[dict]) -> str:
    out = ["| d | schedule | solved | 95 % interval | median conv. step | compute s/run | floss steps/run |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        conv = "—" if r["median_convergence"] is None else f"{r['median_convergence']:.0f}"
        out.append(f"| {r['delay']} | {r['label']} | {r['successes']}/{r['n']} | {100 * r['ci_low']:.0f}–"
                   f"{100 * r['ci_high']:.0f} % | {conv} | {r['compute_s_per_run']:.1f} | {r['floss_steps_per_run']:.0f} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--delays", default="20,40,60")
    ap.add_argument("--seeds", type=int, default=9)
    ap.add_argument("--schedules", default="none,pre,pre+inter,adaptive")
    ap.add_argument("--variants", action="store_true", help="also the adaptive variants (VARIANTS)")
    ap.add_argument("--proxies", action="store_true", help="also pre-flossing's cheap proxies (PROXIES)")
    ap.add_argument("--no-stop-when-solved", dest="stop", action="store_false")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default=None, help="JSON lines, one per cell; cells already there are skipped")
    a = ap.parse_args()
    cells = [(s, s, {}) for s in a.schedules.split(",")]
    if a.variants:
        cells += [(label, sched, o) for label, (sched, o) in VARIANTS.items()]
    if a.proxies:
        cells += [(label, sched, o) for label, (sched, o) in PROXIES.items()]
    done = []
    if a.out and Path(a.out).exists():
        done = [json.loads(line) for line in Path(a.out).read_text().splitlines() if line.strip()]
    rows = []
    for d in (int(x) for x in a.delays.split(",")):
        for label, sched, o in cells:
            hit = next((r for r in done if r["delay"] == d and r["label"] == label and r["n"] == a.seeds
                        and r["stop_when_solved"] == a.stop), None)
            if hit is None:
                hit = {**run_cell(d, sched, a.seeds, o, a.stop, a.workers), "label": label}
                print(f"d={d} {label}: {hit['successes']}/{hit['n']} solved, median conv {hit['median_convergence']}, "
                      f"{hit['compute_s_per_run']:.1f} s/run, wall {hit['wall_s']:.0f} s", flush=True)
                if a.out:
                    with open(a.out, "a") as f:
                        f.write(json.dumps(hit) + "\n")
            rows.append(hit)
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
