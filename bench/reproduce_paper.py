"""Reproduce the paper's central claim with the paper preset (issue 3).

Delayed XOR, vanilla RNN N=80, 9 seeds, d=20 and a longer delay, schedules none / pre / pre+inter,
everything else the reference protocol (floss_core.experiment.PRESETS['paper']). Each finished
ensemble is appended to a JSON-lines file as it completes and the summary table is printed as
markdown at the end.

    OMP_NUM_THREADS=1 python bench/reproduce_paper.py --delays 20,40 --seeds 9 --out floss_data/paper.jsonl
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from floss_core.experiment import Job, make_spec, plan, run_job, summarize  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--delays", default="20,40")
    ap.add_argument("--seeds", type=int, default=9)
    ap.add_argument("--schedules", default="none,pre,pre+inter")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--out", default="floss_data/paper.jsonl")
    ap.add_argument("--batch", action="store_true", help="train all schedules of a delay as one ensemble")
    ap.add_argument("--summary-of", nargs="*", default=None, help="only print the table of these JSON-lines files")
    a = ap.parse_args()
    if a.summary_of is not None:
        print_table([json.loads(line) for f in a.summary_of for line in Path(f).read_text().splitlines()])
        return
    spec = make_spec("paper", task="xor", delays=[int(d) for d in a.delays.split(",")], seeds=a.seeds,
                     schedules=a.schedules.split(","), steps=a.steps, device="cpu", name="paper reproduction")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if out.exists():  # resume: skip ensembles already written
        for line in out.read_text().splitlines():
            rec = json.loads(line)
            done.setdefault((rec["config"]["task"]["delay"], rec["schedule"]), []).append(rec)
    records = [r for rs in done.values() for r in rs]
    t_all = time.perf_counter()
    # --batch: one ensemble per delay holding every schedule not yet done; else one per (delay, schedule)
    jobs = []
    for j in plan(spec, batch=True):
        todo = tuple(n for n in j.schedules if (j.delay, n) not in done)
        jobs += [Job(j.delay, todo)] if a.batch and todo else [Job(j.delay, (n,)) for n in todo]
    for job in jobs:
        t0 = time.perf_counter()
        recs = run_job(spec, job)
        for r in recs:
            r.pop("jacobian", None)  # keep the file small: headline figures, metrics and spectra
        with out.open("a") as f:
            for r in recs:
                f.write(json.dumps(r) + "\n")
        records += recs
        print(f"{job.label}: {time.perf_counter() - t0:.0f} s, "
              f"{sum(r['success'] for r in recs)}/{len(recs)} solved", flush=True)
    print(f"total {time.perf_counter() - t_all:.0f} s this invocation")
    print_table(records)


def print_table(records) -> None:
    cols = ["delay", "schedule", "successes", "n", "median_convergence", "iqr_convergence", "final_acc",
            "lambda1_before", "lambda1_flossed", "lambda1_after", "wall_seconds", "floss_share"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in summarize(records):
        print("| " + " | ".join(f"{row[c]:.3g}" if isinstance(row[c], float) else str(row[c]) for c in cols) + " |")


if __name__ == "__main__":
    main()
