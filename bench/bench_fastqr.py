"""The fused RNN tangent kernel (floss_core.fastqr) against the current flossing path, side by side.

    OMP_NUM_THREADS=1 python bench/bench_fastqr.py [--E 9] [--N 80] [--k 75] [--L 55] [--reps 7]

One flossing window per member as ``train.flossing_exponents`` computes it (state trajectory from the
fused sequence kernel, then the tangent loop), forward + backward of the loss Σ_e mean_i λ_i²:
  current  lyapunov_spectrum(..., jacobian=M.jacobian_fn, trajectory=states), Householder QR under autograd
  fastqr   rnn_lyapunov_spectrum(Xprev, J, Q0) with Xprev = cat(x0, states[:-1])
Timings alternate between the two (medians of --reps); also prints max|Δλ| between them, the
relative difference of their parameter gradients, and each one's max|Δλ| against the current path run
in float64 (the float32 rounding both carry). Ratios are what to read; the machine is shared and noisy.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from floss_core import models as M
from floss_core.fastqr import rnn_lyapunov_spectrum
from floss_core.lyapunov import lyapunov_spectrum
from floss_core.train import FlossConfig, _bits, member_generators, member_q0


def current(model, params, floss, inputs, q0):
    """train.flossing_exponents as it is today (fused trajectory, through_states=True)."""
    e, b = inputs.shape[1], inputs.shape[2]
    x0 = params["h0"][:, :1].detach().expand(e, b, -1)
    u = M.drive(model, params, inputs)
    states = M.run_driven(model, params, x0, u)
    return lyapunov_spectrum(M.step_fn(model, params), x0, u, floss.k, jacobian=M.jacobian_fn(model, params),
                             transient=floss.transient, qr_every=floss.qr_every, Q0=q0[:, None], qr=floss.qr,
                             trajectory=states)


def fast(model, params, floss, inputs, q0):
    e, b = inputs.shape[1], inputs.shape[2]
    x0 = params["h0"][:, :1].detach().expand(e, b, -1)
    u = M.drive(model, params, inputs)
    states = M.run_driven(model, params, x0, u)
    Xprev = torch.cat([x0[None], states[:-1]])
    return rnn_lyapunov_spectrum(Xprev, params["J"], q0[:, None], transient=floss.transient,
                                 qr_every=floss.qr_every)


def run(fn, model, params, floss, inputs, q0):
    for p in params.values():
        p.grad = None
    lam = fn(model, params, floss, inputs, q0)
    (lam ** 2).mean(-1).sum().backward()
    return lam.detach(), {n: params[n].grad.clone() for n in M.flossed_names(params)}


def compare(E, N, k, L, qr_every, reps, gain):
    model = M.ModelConfig(hidden=N, gain=gain)
    floss = FlossConfig(k=k, seq_len=L, transient=min(16, L - 1), qr_every=qr_every)
    seeds = list(range(E))
    params = {n: v.requires_grad_(True) for n, v in M.init_ensemble(model, 1, 1, seeds).items()}
    q0 = member_q0(seeds, N, k, "cpu")
    inputs = _bits(member_generators(seeds, 3), L, 1, 1, "cpu")
    lam_a, g_a = run(current, model, params, floss, inputs, q0)   # warm-up, and the numbers to compare
    lam_b, g_b = run(fast, model, params, floss, inputs, q0)
    p64 = {n: v.detach().double().requires_grad_(True) for n, v in params.items()}
    lam_64, _ = run(current, model, p64, floss, inputs.double(), q0.double())
    ta, tb = [], []
    for _ in range(reps):
        for fn, ts in ((current, ta), (fast, tb)):
            t0 = time.perf_counter()
            run(fn, model, params, floss, inputs, q0)
            ts.append(time.perf_counter() - t0)
    a, b = statistics.median(ta), statistics.median(tb)
    grad_rel = max(float((g_b[n] - g_a[n]).norm() / g_a[n].norm().clamp_min(1e-30)) for n in g_a)
    err = lambda lam: float((lam.double() - lam_64).abs().max())
    print(f"| {qr_every} | {1e3 * a:.1f} | {1e3 * b:.1f} | {a / b:.2f}x | "
          f"{float((lam_a - lam_b).abs().max()):.2e} | {grad_rel:.2e} | {err(lam_a):.2e} | {err(lam_b):.2e} | "
          f"{float(lam_a.max()):+.3f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--E", type=int, default=9)
    ap.add_argument("--N", type=int, default=80)
    ap.add_argument("--k", type=int, default=75)
    ap.add_argument("--L", type=int, default=55)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--gain", type=float, default=1.0)
    ap.add_argument("--qr-every", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, E={args.E} b=1 N={args.N} k={args.k} "
          f"L={args.L} gain={args.gain}, float32, forward+backward, median of {args.reps}\n")
    print("| QR every | current ms | fastqr ms | speed-up | max abs dλ | max rel dgrad | current vs f64 | "
          "fastqr vs f64 | λ_1 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for q in args.qr_every:
        compare(args.E, args.N, args.k, args.L, q, args.reps, args.gain)


if __name__ == "__main__":
    main()
