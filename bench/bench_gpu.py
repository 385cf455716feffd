"""Ensemble throughput on a GPU (issue 7): training and flossing steps for E = 1 .. 1024 networks.

    python bench/bench_gpu.py                      # CUDA if present, else says so and exits 0
    python bench/bench_gpu.py --device cpu --max-e 16   # the same table on the CPU (a smoke check)

Same closures as bench/bench_speed.py (the engine's own training and flossing steps, paper sizes:
N = 80, B = 16, T = 300; k = 75, window 55, QR every step). Each row: median wall time of one step
after warm-up, with torch.cuda.synchronize() around it, and networks per second. The batches are
drawn on the CPU from per-member generators and moved, as ``train`` does, so that cost is included.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from bench_ensemble import table  # noqa: E402
from bench_speed import engine_floss_step, engine_train_step, train_flops  # noqa: E402


def timed(fn, device: str, reps: int) -> float:
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    fn()
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--max-e", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    if a.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here; nothing measured (use --device cpu for a smoke check)")
        return
    name = torch.cuda.get_device_name(0) if a.device == "cuda" else "cpu"
    print(f"## Ensemble throughput on {name} (torch {torch.__version__}, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', '(default)')})\n")
    rows = []
    for E in [e for e in (1, 8, 64, 256, 1024) if e <= a.max_e]:
        t_train = timed(engine_train_step(E, device=a.device), a.device, a.reps)
        t_floss = timed(engine_floss_step(E, device=a.device), a.device, a.reps)
        rows.append({"E": E, "train ms/step": 1e3 * t_train, "train networks/s": E / t_train,
                     "train GFLOP/s": train_flops(E) / t_train / 1e9,
                     "floss ms/step": 1e3 * t_floss, "floss networks/s": E / t_floss})
        print(f"E={E} done", file=sys.stderr, flush=True)
    table(rows)


if __name__ == "__main__":
    main()
