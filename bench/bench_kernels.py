"""The speed figures that used to live in docstrings, measured side by side in one run (issue 14).

    OMP_NUM_THREADS=1 python bench/bench_kernels.py [--E 9] [--B 16] [--N 80] [--T 300] [--reps 7]

1. The RNN's sequence kernel with hand-written BPTT (``models._RNNSequence``, ``run(fused=True)``) vs
   autograd through the step loop (``run(fused=False)``): forward + backward of the states' sum.
2. The fused drive + recurrence + readout kernel (``models.rnn_readouts``) vs ``readout(run(...))``
   (the sequence kernel and a separate readout): forward + backward of the readouts' sum.
3. Forward-mode AD in torch: an op between a dual tensor and a plain weight vs the same op with the
   weight made dual too (why ``adapters.stepper._forward_tangent`` makes every operand dual), one op on
   k tangent columns: F.linear, an element-wise product, a matmul.
Each pair alternates within every repetition; the medians and their ratio are printed (these machines
are shared and noisy: read the ratios). Results: bench/RESULTS.md, "Kernels".
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.autograd.forward_ad as fwAD  # noqa: E402

from floss_core import models as M  # noqa: E402


def timed(fn, reps: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def side_by_side(name: str, a, b, reps: int, labels=("fast", "reference")) -> None:
    ta, tb = [], []
    for _ in range(reps):            # alternate, so a slow phase of the machine hits both
        ta += timed(a, 1)
        tb += timed(b, 1)
    ma, mb = statistics.median(ta), statistics.median(tb)
    print(f"| {name} | {labels[0]} {1e3 * ma:.2f} ms | {labels[1]} {1e3 * mb:.2f} ms | **{mb / ma:.1f}×** |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--E", type=int, default=9)
    ap.add_argument("--B", type=int, default=16)
    ap.add_argument("--N", type=int, default=80)
    ap.add_argument("--T", type=int, default=300)
    ap.add_argument("--k", type=int, default=75)
    ap.add_argument("--reps", type=int, default=7)
    a = ap.parse_args()
    torch.manual_seed(0)
    cfg = M.ModelConfig(hidden=a.N, gain=2.0)
    params = {k: v.requires_grad_(True) for k, v in M.init_ensemble(cfg, 1, 1, range(a.E), batch=a.B).items()}
    inputs = torch.randint(0, 2, (a.T, a.E, a.B, 1)).float()
    x0 = params["h0"][:, :1].expand(a.E, a.B, a.N)
    print(f"E = {a.E}, B = {a.B}, N = {a.N}, T = {a.T}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s); medians of {a.reps}\n")
    print("| what | fast path | reference | ratio |\n|---|---|---|---|")

    def run(fused):
        def go():
            M.run(cfg, params, x0, inputs, fused=fused).sum().backward()
        return go
    side_by_side("sequence kernel vs autograd step loop (fwd + bwd)", run(True), run(False), a.reps,
                 ("kernel", "autograd"))

    def readouts():
        M.rnn_readouts(params, x0, inputs).sum().backward()

    def separate():
        M.readout(cfg, params, M.run(cfg, params, x0, inputs)).sum().backward()
    side_by_side("fused readouts vs readout(run(...)) (fwd + bwd)", readouts, separate, a.reps,
                 ("fused", "separate"))

    # the ops of a GRU / LSTM cell's tangent: a linear layer and an element-wise product with a weight
    W, bias = torch.randn(3 * a.N, a.N), torch.randn(3 * a.N)
    x, t = torch.randn(a.k, 1, a.N), torch.randn(a.k, 1, a.N)
    for name, op in (("F.linear", lambda d, w, c: torch.nn.functional.linear(d, w, c)),
                     ("element-wise *", lambda d, w, c: d * c[:a.N]), ("matmul", lambda d, w, c: d @ w.T)):
        def with_plain(op=op):
            with fwAD.dual_level():
                fwAD.unpack_dual(op(fwAD.make_dual(x, t), W, bias)).tangent.sum()

        def all_dual(op=op):
            with fwAD.dual_level():
                w, c = fwAD.make_dual(W, torch.zeros_like(W)), fwAD.make_dual(bias, torch.zeros_like(bias))
                fwAD.unpack_dual(op(fwAD.make_dual(x, t), w, c)).tangent.sum()
        side_by_side(f"forward AD, {name}: every operand dual vs a plain weight", all_dual, with_plain,
                     a.reps * 5, ("all dual", "plain weight"))

if __name__ == "__main__":
    main()
