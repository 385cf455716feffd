"""Estimated vs measured: the Launch page's time estimate (``plan.estimate`` from this machine's cost
table) against real comparisons run as the dashboard's worker runs them (``runner.run_here`` with the
worker count the estimate assumes), at every size: tiny, quick, paper (300 training steps), the rnn,
gru and lstm, and a CSV series.

    OMP_NUM_THREADS=1 python bench/estimate_check.py                      # every case (about 10 min on 2 cores)
    OMP_NUM_THREADS=1 python bench/estimate_check.py --cases tiny,quick-demo --workers 1
    OMP_NUM_THREADS=1 python bench/estimate_check.py --store floss_data/floss.db   # its table (measured if missing)

The cost table is measured first (every part the background worker measures) unless the store holds a
fresh one. Each row prints the estimate, the measured wall time, their ratio and the load average when
the run started (other programs on the machine slow the run but not the estimate).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def write_series(path: Path, rows: int = 1500) -> str:
    """A noisy two-period sine series (a header and one column), the kind of file the csv task reads."""
    import numpy as np

    t = np.arange(rows)
    rng = np.random.default_rng(0)
    y = np.sin(2 * np.pi * t / 50) + 0.5 * np.sin(2 * np.pi * t / 13) + 0.2 * rng.standard_normal(rows)
    path.write_text("y\n" + "\n".join(f"{v:.5f}" for v in y) + "\n", encoding="utf-8")
    return str(path)


def cases(csv: str) -> dict:
    """name -> spec: the sizes of the Launch page (tiny, quick, paper with 300 training steps), the quick
    demo, the gated architectures and a CSV series."""
    from floss_core import demo

    return {
        "tiny": lambda: demo.launch_spec("tiny"),
        "quick-demo": demo.quick_demo_spec,
        "quick": lambda: demo.launch_spec("quick"),
        "paper-300": lambda: demo.launch_spec("paper", steps=300),
        "gru-tiny": lambda: demo.launch_spec("tiny", arch="gru"),
        "gru-quick": lambda: demo.launch_spec("quick", arch="gru", seeds=3, steps=200),
        "lstm-tiny": lambda: demo.launch_spec("tiny", arch="lstm"),
        "lstm-quick": lambda: demo.launch_spec("quick", arch="lstm", seeds=3, steps=200),
        "csv-quick": lambda: demo.launch_spec("quick", task="csv", csv=csv, delays=[5]),
    }


def table_for(store, workers: int) -> dict:
    """The store's fresh cost table, its missing parts measured first (as the idle worker would)."""
    from floss_core import costs

    table = store.cost_table("cpu")
    if not costs.fresh(table):
        table = costs.new_table()
    todo = costs.missing(table, costs.parts())
    t0 = time.perf_counter()
    for part in todo:
        costs.measure_part(table, part, workers=workers)
        print(f"  measured {part} ({time.perf_counter() - t0:.0f} s so far)", file=sys.stderr, flush=True)
    if todo:
        store.save_cost_table(table)
        print(f"cost table: {len(todo)} parts measured in {time.perf_counter() - t0:.0f} s", flush=True)
    return table


def main(argv=None) -> None:
    from floss_core import plan, runner
    from floss_core.store import Store

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default=None, help="comma-separated case names (default: all)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: the dashboard worker's)")
    p.add_argument("--store", default=None, help="keep and reuse the cost table in this store")
    a = p.parse_args(argv)
    workers = a.workers or runner.configured_workers()
    with tempfile.TemporaryDirectory(prefix="floss-estimate-") as tmp:
        csv = write_series(Path(tmp) / "series.csv")
        everything = cases(csv)
        names = a.cases.split(",") if a.cases else list(everything)
        unknown = [n for n in names if n not in everything]
        if unknown:
            p.error(f"unknown case {unknown[0]!r}; choose from {', '.join(everything)}")
        with Store(a.store or Path(tmp) / "table.db") as store:
            table = table_for(store, workers)
        m = table["machine"]
        print(f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, floss_core {m['floss_core']}; "
              f"table measured {table['updated']} ({table['seconds_measuring']:.0f} s of measuring); "
              f"{workers} worker process(es)")
        print("\n| case | arch | runs | jobs x E | processes | estimated s | measured s | ratio | load avg |")
        print("|---|---|---|---|---|---|---|---|---|")
        ratios = []
        for name in names:
            spec = everything[name]()
            e = plan.estimate(spec, table, workers=workers)
            jobs, _ = plan.processes_for(spec, workers)
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            runner.run_here(spec, Path(tmp) / f"{name}.db", max_workers=workers)
            measured = time.perf_counter() - t0
            ratios.append(e.seconds / measured)
            sizes = sorted({len(j.member_list(spec)) for j in jobs})
            print(f"| {name} | {spec.model.arch} | {len(spec.seeds) * len(spec.schedules) * len(spec.delays)} | "
                  f"{len(jobs)} x {'/'.join(map(str, sizes))} | {e.processes} | {e.seconds:.1f} | {measured:.1f} | "
                  f"{e.seconds / measured:.2f} | {load:.1f} |", flush=True)
        worst = max(ratios, key=lambda r: abs(math.log(r)))
        print(f"\nworst ratio {worst:.2f}; every case within 1.5x: {all(1 / 1.5 <= r <= 1.5 for r in ratios)}")


if __name__ == "__main__":
    main()
