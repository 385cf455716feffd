"""The cost of flossing a user's own module against the module's own training step (issue 17, item 4).

    python bench/bench_adapter_cost.py [--hidden 64] [--k 32] [--T 35] [--batch 20] [--reps 15]
                                       [--configs rnn:1,rnn:2,gru:1,gru:2,lstm:1,lstm:2] [--threads 1]
                                       [--parts]

For each configuration (nn.RNN / nn.GRU / nn.LSTM, input and hidden size ``--hidden``):
1. the module's own forward + backward on a batch of ``--batch`` sequences of ``--T`` steps (its fused
   kernel, loss = out.sum()), what a user's training step costs without any flossing;
2. ``flossing_loss_term`` forward + backward on ONE sequence of ``--T`` steps, k = ``--k``, default
   settings otherwise (transient 0, qr_every 1, state_horizon 3): the analytic tangents and the window
   kernel (``adapters.window``);
3. the same through the path before (forward-mode AD tangents, Householder QR, one autograd graph per
   step), for before / after.
The three alternate within every repetition (so a slow phase of a shared machine hits all of them);
medians of ``--reps``, and the ratio flossing / module. With CUDA available the same runs on the GPU
(``torch.cuda.synchronize()`` around each) in extra rows. ``--parts``: the fast path's stages timed
cumulatively (trajectory; + per-layer Jacobians; + window kernel), fwd + bwd each. Results: bench/RESULTS.md, "Flossing a
user's module".
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from floss_core.adapters import stepper  # noqa: E402
from floss_core.adapters.regularizer import flossing_loss_term  # noqa: E402

KINDS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


def _timer(fn, device):
    def go():
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0
    return go


def measure(kind: str, layers: int, *, hidden: int, k: int, T: int, batch: int, reps: int,
            device: torch.device) -> dict:
    """Medians (ms) of the module's own step, the flossing term now and the flossing term before."""
    torch.manual_seed(0)
    m = KINDS[kind](hidden, hidden, num_layers=layers).to(device)
    xb = torch.randn(T, batch, hidden, device=device)
    x1 = torch.randn(T, 1, hidden, device=device)

    def own():
        m.zero_grad(set_to_none=True)
        out, _ = m(xb)
        out.sum().backward()

    def floss():
        m.zero_grad(set_to_none=True)
        flossing_loss_term(m, x1, k=k).backward()

    def old():
        saved = stepper.cell_tangent
        stepper.cell_tangent = lambda *a: None      # no analytic tangent: forward-mode AD, step by step
        try:
            floss()
        finally:
            stepper.cell_tangent = saved

    fns = [_timer(f, device) for f in (own, floss, old)]
    for f in fns:        # warm-up (first calls allocate, build kernels)
        f()
    times = [[] for _ in fns]
    for _ in range(reps):
        for f, ts in zip(fns, times):
            ts.append(f())
    own_ms, floss_ms, old_ms = (1e3 * statistics.median(ts) for ts in times)
    return {"kind": kind, "layers": layers, "module_ms": own_ms, "floss_ms": floss_ms, "old_ms": old_ms,
            "ratio": floss_ms / own_ms, "old_ratio": old_ms / own_ms}


def parts(kind: str, layers: int, *, hidden: int, k: int, T: int, reps: int, device: torch.device) -> dict:
    """Where the time of the fast path goes (ms, fwd + bwd, medians): the trajectory alone, then with the
    per-layer Jacobians, then with the window kernel (each stage's output summed and backpropagated)."""
    from floss_core.adapters.stepper import _prepare
    from floss_core.adapters.window import _q0, _trajectory_batched
    from floss_core.fastqr import layered_tangent_logs
    torch.manual_seed(0)
    m = KINDS[kind](hidden, hidden, num_layers=layers).to(device)
    x1 = torch.randn(T, 1, hidden, device=device)

    def upto(stage):
        def go():
            m.zero_grad(set_to_none=True)
            st, xs, s0, _ = _prepare(m, x1, None)
            tr = _trajectory_batched(st, xs, s0, 3)
            out = tr.sum()
            if stage > 0:
                As, Bs, cells, order = st.tangent.layers(torch.cat([s0[None], tr[:-1]]), xs)
                out = sum(a.sum() for a in As + Bs + (cells or []))
            if stage > 1:
                Q0 = _q0(st.dim, k, 0, s0)
                out = layered_tangent_logs(As, Bs, Q0 if order is None else Q0[order], feed=hidden,
                                           cells=cells).sum()
            out.backward()
        return go
    fns = [_timer(upto(i), device) for i in range(3)]
    for f in fns:
        f()
    times = [[] for _ in fns]
    for _ in range(reps):
        for f, ts in zip(fns, times):
            ts.append(f())
    a, b, c = (1e3 * statistics.median(ts) for ts in times)
    return {"kind": kind, "layers": layers, "trajectory": a, "jacobians": b - a, "kernel": c - b, "total": c}


def _name(r):
    return f"nn.{KINDS[r['kind']].__name__}, {r['layers']} layer{'s' if r['layers'] > 1 else ''}"


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--T", type=int, default=35)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: leave torch's default)")
    ap.add_argument("--configs", default="rnn:1,rnn:2,gru:1,gru:2,lstm:1,lstm:2")
    ap.add_argument("--parts", action="store_true", help="also: where the fast path's time goes")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    configs = [(c.split(":")[0], int(c.split(":")[1])) for c in a.configs.split(",")]
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"hidden {a.hidden}, k = {a.k}, T = {a.T}, module batch {a.batch}, flossing 1 sequence; torch "
          f"{torch.__version__}, {torch.get_num_threads()} thread(s); medians of {a.reps}, alternating\n")
    rows = []
    for kind, layers in configs:
        for device in devices:
            r = measure(kind, layers, hidden=a.hidden, k=a.k, T=a.T, batch=a.batch, reps=a.reps,
                        device=device)
            r["device"] = device.type
            rows.append(r)
    head = "| module | device | module fwd + bwd, batch {b} | flossing_loss_term fwd + bwd, 1 seq. | ratio " \
           "| before (forward-mode AD) | ratio before | speed-up |"
    print(head.format(b=a.batch))
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {_name(r)} | {r['device']} | {r['module_ms']:.2f} ms | {r['floss_ms']:.2f} ms | "
              f"**{r['ratio']:.1f}×** | {r['old_ms']:.1f} ms | {r['old_ratio']:.1f}× | "
              f"{r['old_ms'] / r['floss_ms']:.1f}× |")
    if a.parts:
        print("\n| module | trajectory (with the input checks) | + per-layer Jacobians | + window kernel (tangents, QRs) | sum |")
        print("|---|---|---|---|---|")
        for kind, layers in configs:
            p = parts(kind, layers, hidden=a.hidden, k=a.k, T=a.T, reps=a.reps, device=devices[0])
            print(f"| {_name(p)} | {p['trajectory']:.2f} ms | {p['jacobians']:.2f} ms | {p['kernel']:.2f} ms | "
                  f"{p['total']:.2f} ms |")
    return rows


if __name__ == "__main__":
    main()
