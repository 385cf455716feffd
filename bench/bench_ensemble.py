"""Ensemble vs sequential, measured side by side in one run (issues 2 and 3).

    OMP_NUM_THREADS=1 python bench/bench_ensemble.py            # both parts, a few minutes
    python bench/bench_ensemble.py --only spectrum --reps 3     # default threads, one part

(a) spectrum: the first k Lyapunov exponents of E = 16 vanilla RNNs (N = 80, k = 80, 200 steps, a QR
    every step) computed as ONE ensemble call vs 16 single-network calls of the same function; once
    forward only (no_grad, like a diagnostic) and once with a backward pass through the spectrum (a
    flossing step: ``flossing_exponents`` + ``flossing_loss`` + backward).
(b) training: ``train()`` with 16 seeds as one ensemble vs 16 sequential ``train()`` calls with one
    seed each; the same work (quick-preset-like sizes: N = 32, T = 60, 50 training steps, schedule
    'pre' with 20 flossing steps, k = 16, diagnostics off).

Prints a markdown table per part; the ratio (sequential / ensemble) is the number to read. The times
are wall-clock medians of the two variants run alternately; the machines are shared, so other
processes add noise (alternating spreads it over both columns alike).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from floss_core import models as M  # noqa: E402
from floss_core.flossing import flossing_loss  # noqa: E402
from floss_core.lyapunov import lyapunov_spectrum  # noqa: E402
from floss_core.schedules import Schedule  # noqa: E402
from floss_core.tasks import TaskConfig  # noqa: E402
from floss_core.train import (FlossConfig, TrainConfig, _bits, flossing_exponents, member_generators,  # noqa: E402
                              member_q0, train)


def paired_medians(fn_a, fn_b, reps: int) -> tuple[float, float]:
    """Median wall times of two functions run alternately (a, b, a, b, ...) after one warm-up each, so
    load from other processes hits both alike."""
    fn_a(), fn_b()  # warm-up (first-call allocations, lazy imports)
    ta, tb = [], []
    for _ in range(reps):
        for fn, times in ((fn_a, ta), (fn_b, tb)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


def table(rows: list[dict]) -> None:
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
    print(flush=True)


def machine() -> str:
    try:
        model = next((line.split(":", 1)[1].strip() for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name")), "?")
    except OSError:
        model = platform.processor() or "?"
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # nproc honours OMP_NUM_THREADS
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, env=env).stdout.strip()
    return (f"machine: {model}; nproc {nproc}; torch {torch.__version__}; torch threads {torch.get_num_threads()}; "
            f"python {platform.python_version()}")


# ------------------------------------------------------------------------------ (a) spectrum
def bench_spectrum(E: int, N: int, k: int, steps: int, reps: int) -> list[dict]:
    model = M.ModelConfig(hidden=N, gain=1.0)
    seeds = list(range(E))
    params = {n: v.requires_grad_(True) for n, v in M.init_ensemble(model, 1, 1, seeds).items()}
    singles = [{n: v[i:i + 1].detach().clone().requires_grad_(True) for n, v in params.items()} for i in range(E)]
    floss = FlossConfig(k=k, seq_len=steps, transient=0, qr_every=1)
    Q0 = member_q0(seeds, N, k, "cpu")
    inputs = _bits(member_generators(seeds, 3), steps, 1, 1, "cpu")          # (L, E, 1, 1)

    def forward(p, x, q):  # a diagnostic: exponents only, no graph
        with torch.no_grad():
            u = M.drive(model, p, x)
            return lyapunov_spectrum(M.step_fn(model, p), p["h0"][:, :1], u, k, jacobian=M.jacobian_fn(model, p),
                                     Q0=q[:, None])

    def backward(p, x, q):  # a flossing step's computation: exponents, loss, gradients
        lam = flossing_exponents(model, p, floss, x, q)
        flossing_loss(lam).sum().backward()
        for v in p.values():
            v.grad = None

    rows = []
    for name, fn in (("forward (no_grad)", forward), ("forward + backward", backward)):
        t_ens, t_seq = paired_medians(lambda: fn(params, inputs, Q0),
                                      lambda: [fn(singles[i], inputs[:, i:i + 1], Q0[i:i + 1]) for i in range(E)], reps)
        rows.append({"spectrum": name, "E": E, "N": N, "k": k, "steps": steps,
                     f"ensemble s ({E} nets)": t_ens, f"{E} single calls s": t_seq, "ratio": t_seq / t_ens})
    return rows


# ------------------------------------------------------------------------------ (b) training
def bench_training(E: int, reps: int) -> list[dict]:
    task = TaskConfig(name="xor", delay=20, seq_len=60, batch=16)
    model = M.ModelConfig(hidden=32, gain=1.0)
    cfg = TrainConfig(steps=50, lr=3e-3, eval_every=50, diag_len=100, diag_transient=20, diagnostics=False)
    floss = FlossConfig(k=16, seq_len=40, transient=10, lr=3e-3)
    sched = Schedule("pre", pre_steps=20)
    seeds = list(range(E))
    t_ens, t_seq = paired_medians(lambda: train(model, task, cfg, floss, sched, seeds),
                                  lambda: [train(model, task, cfg, floss, sched, [s]) for s in seeds], reps)
    return [{"train()": "pre, 20 floss + 50 train steps", "seeds": E, "N": 32, "T": 60, "k": 16,
             "ensemble s": t_ens, "sequential s": t_seq, "ratio": t_seq / t_ens}]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["spectrum", "training"], default=None)
    ap.add_argument("--E", type=int, default=16)
    ap.add_argument("--N", type=int, default=80)
    ap.add_argument("--k", type=int, default=80)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    print(machine(), flush=True)
    print()
    if a.only in (None, "spectrum"):
        table(bench_spectrum(a.E, a.N, a.k, a.steps, a.reps))
    if a.only in (None, "training"):
        table(bench_training(a.E, a.reps))


if __name__ == "__main__":
    main()
