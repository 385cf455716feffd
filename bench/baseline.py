"""Straightforward single-network PyTorch port of the gradient-flossing protocol.

This is the *speed baseline* the project's optimised ensemble engine is compared
against.  It is deliberately the kind of port one writes directly from the
paper's Julia reference code: plain tensors (no ``nn.Module``), one network at a
time, a Python loop over time, ``torch.linalg.qr`` at every time step, float32
on the CPU.  It is meant to be faithful and correct, not artificially slow.

Protocol (see ``shared/PAPER_NOTES.md``):

* model      ``x_t = J tanh(x_{t-1}) + b + W_in s_t / C``, logit ``r_t = w_out x_t + c``;
             state stored column-wise, shape ``(N, B)``;
* init       ``J = g N(0,1)/sqrt(N)``, ``W_in ~ N(0,1)``, ``w_out ~ N(0,1)``,
             ``b = 0.1 U(0,1)``, ``c = 0.001``, trainable ``h0`` (N x B) relaxed
             for 100 autonomous steps from Gaussian noise;
* task       delayed XOR ``y_t = s_{t-d/2} XOR s_{t-d}``, scored steps ``t >= d``
             (0-based), BCE-with-logits averaged over scored steps and batch;
* optimiser  per-array gradient-norm clipping at 0.03, then Adam(1e-3);
* flossing   own Adam(1e-3) on J, b, W_in; window 55, batch 1, k tangent
             vectors, fixed orthonormal start, QR every step, 16-step transient,
             exponents = sum log|R_ii| / 39, loss = mean(exponents^2).

The tangent map is the exact Jacobian of the x-map,
``dx_t/dx_{t-1} = J diag(1 - tanh^2(x_{t-1}))`` (same exponents as the rate-map
form ``diag(1 - tanh^2(x_t)) J`` used by the reference).

CLI::

    python bench/baseline.py --seeds 2 --steps 50 --floss-steps 20 --schedules none,pre
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

DTYPE = torch.float32
SCHEDULES = ("none", "pre", "inter", "pre+inter")


# --------------------------------------------------------------------------- model
def step(params: dict, x: torch.Tensor, s_t: torch.Tensor) -> torch.Tensor:
    """One update ``x_t = J tanh(x_{t-1}) + b + W_in s_t / C``; x: (N, B), s_t: (C, B)."""
    C = params["W_in"].shape[1]
    return params["J"] @ torch.tanh(x) + params["b"] + params["W_in"] @ s_t / C


def input_drive(params: dict, s: torch.Tensor) -> torch.Tensor:
    """``W_in s_t / C`` for all t at once: s (T, C, B) -> (T, N, B)."""
    return params["W_in"] @ s / params["W_in"].shape[1]


def init_network(seed: int, *, N: int = 80, C: int = 1, C_out: int = 1, B: int = 16,
                 k: int = 75, g: float = 1.0, relax_steps: int = 100):
    """Parameters, fixed orthonormal flossing start Q0 (N x k) and the network's generator."""
    gen = torch.Generator().manual_seed(int(seed))
    J = g * torch.randn(N, N, generator=gen, dtype=DTYPE) / math.sqrt(N)
    W_in = torch.randn(N, C, generator=gen, dtype=DTYPE)
    w_out = torch.randn(C_out, N, generator=gen, dtype=DTYPE)
    b = 0.1 * torch.rand(N, 1, generator=gen, dtype=DTYPE)
    c = torch.full((C_out, 1), 0.001, dtype=DTYPE)
    h = torch.randn(N, B, generator=gen, dtype=DTYPE)
    with torch.no_grad():  # relax the initial state with the autonomous network
        for _ in range(relax_steps):
            h = J @ torch.tanh(h) + b
    params = {"J": J, "b": b, "W_in": W_in, "w_out": w_out, "c": c, "h0": h}
    for p in params.values():
        p.requires_grad_(True)
    Q0 = torch.linalg.qr(torch.randn(N, min(k, N), generator=gen, dtype=DTYPE)).Q
    return params, Q0, gen


# ---------------------------------------------------------------------------- task
def delayed_xor_batch(gen: torch.Generator, *, B: int = 16, T: int = 300, d: int = 20, C: int = 1):
    """Bits s (T, C, B) in {0,1}; targets y (T-d, 1, B) for the scored steps t = d..T-1."""
    s = torch.bernoulli(torch.full((T, C, B), 0.5, dtype=DTYPE), generator=gen)
    h = d // 2
    y = (s[d - h:T - h, 0:1] != s[0:T - d, 0:1]).to(DTYPE)  # s_{t-d/2} XOR s_{t-d}
    return s, y


def forward_logits(params: dict, s: torch.Tensor, h0: torch.Tensor, d: int) -> torch.Tensor:
    """Run the network over s from h0; return logits of the scored steps, shape (T-d, C_out, B).

    The input drive and the readout are linear, so they are applied to all time steps at
    once; the recurrence itself is a plain Python loop over time.
    """
    J, b = params["J"], params["b"]
    u = input_drive(params, s)
    x = h0
    xs = []
    # unbind (not u[t]) so that backward stacks the slices once instead of T times
    for t, u_t in enumerate(u.unbind(0)):
        x = J @ torch.tanh(x) + b + u_t
        if t >= d:
            xs.append(x)
    return params["w_out"] @ torch.stack(xs) + params["c"]


def task_loss(params: dict, s: torch.Tensor, y: torch.Tensor, d: int) -> torch.Tensor:
    logits = forward_logits(params, s, params["h0"], d)
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, y)


def clip_each_(tensors, max_norm: float) -> None:
    """Clip the gradient norm of EACH array separately (Flux ``ClipNorm`` semantics)."""
    for p in tensors:
        if p.grad is None:
            continue
        n = torch.linalg.vector_norm(p.grad)
        if n > max_norm:
            p.grad.mul_(max_norm / n)


def train_step(params: dict, opt: Adam, gen: torch.Generator, *,
               B: int = 16, T: int = 300, d: int = 20, clip: float = 0.03) -> float:
    s, y = delayed_xor_batch(gen, B=B, T=T, d=d, C=params["W_in"].shape[1])
    opt.zero_grad(set_to_none=True)
    loss = task_loss(params, s, y, d)
    loss.backward()
    clip_each_(params.values(), clip)
    opt.step()
    return loss.item()


@torch.no_grad()
def evaluate(params: dict, gen: torch.Generator, *, n_test: int = 64, T: int = 300, d: int = 20) -> float:
    """Accuracy over scored steps of a fresh batch of n_test sequences.

    The trainable h0 has B columns; test sequences start from them cyclically.
    """
    s, y = delayed_xor_batch(gen, B=n_test, T=T, d=d, C=params["W_in"].shape[1])
    h0 = params["h0"]
    idx = torch.arange(n_test) % h0.shape[1]
    logits = forward_logits(params, s, h0[:, idx], d)
    return ((logits > 0).to(DTYPE) == y).to(DTYPE).mean().item()


# ------------------------------------------------------------------------ flossing
def floss_exponents(params: dict, x0: torch.Tensor, s: torch.Tensor, Q0: torch.Tensor,
                    transient: int = 16) -> torch.Tensor:
    """Finite-window Lyapunov exponents (k,) along the trajectory driven by s (L, C, 1).

    Differentiable through every step and every QR.
    """
    J, b = params["J"], params["b"]
    u = input_drive(params, s)
    x = x0
    Q = Q0
    acc = torch.zeros(Q0.shape[1], dtype=x0.dtype)
    L = s.shape[0]
    for t, u_t in enumerate(u.unbind(0)):
        a = torch.tanh(x)
        # exact Jacobian of the x-map: dx_t/dx_{t-1} = J diag(1 - tanh^2(x_{t-1}))
        D = J * (1.0 - a * a).reshape(1, -1)
        x = J @ a + b + u_t
        Q, R = torch.linalg.qr(D @ Q)
        if t >= transient:
            acc = acc + torch.log(torch.abs(torch.diagonal(R)))
    return acc / (L - transient)


def floss_step(params: dict, Q0: torch.Tensor, opt: Adam, gen: torch.Generator, *,
               L: int = 55, transient: int = 16) -> float:
    s = torch.bernoulli(torch.full((L, params["W_in"].shape[1], 1), 0.5, dtype=DTYPE), generator=gen)
    x0 = params["h0"][:, :1].detach()
    opt.zero_grad(set_to_none=True)
    lam = floss_exponents(params, x0, s, Q0, transient)
    loss = torch.mean(lam ** 2)
    loss.backward()
    opt.step()
    return loss.item()


def _floss_phase(params, Q0, opt, gen, n, L, transient, times):
    for _ in range(n):
        t0 = time.perf_counter()
        floss_step(params, Q0, opt, gen, L=L, transient=transient)
        times.append(time.perf_counter() - t0)


# ----------------------------------------------------------------------------- run
class Adam:
    """Plain-tensor Adam, the same update as ``torch.optim.Adam`` (and Flux's ``Adam``).

    ``p -= lr * m_hat / (sqrt(v_hat) + eps)``, no weight decay. Written out rather than
    using ``torch.optim`` because the first ``torch.optim`` step imports ``torch._dynamo``
    (2-3 s), which is irrelevant to the per-step cost being benchmarked.
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params = list(params)
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        bc1 = 1.0 - self.b1 ** self.t
        bc2 = 1.0 - self.b2 ** self.t
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            g = p.grad
            m.mul_(self.b1).add_(g, alpha=1.0 - self.b1)
            v.mul_(self.b2).addcmul_(g, g, value=1.0 - self.b2)
            denom = (v.sqrt() / math.sqrt(bc2)).add_(self.eps)
            p.addcdiv_(m, denom, value=-self.lr / bc1)


def _adam(ps, lr):
    return Adam(ps, lr=lr, betas=(0.9, 0.999), eps=1e-8)


def run_one(seed: int, *, schedule: str = "none", steps: int = 3001, floss_steps: int = 500,
            d: int = 20, N: int = 80, k: int = 75, eval_every: int = 100,
            T: int = 300, B: int = 16, L: int = 55, transient: int = 16, n_test: int = 64,
            inter_at=(100, 200), lr: float = 1e-3, floss_lr: float = 1e-3, clip: float = 0.03,
            g: float = 1.0, threshold: float = 0.95) -> dict:
    """Train one network on delayed XOR with the given flossing schedule.

    Training steps are indexed i = 0..steps-1; evaluation happens after the update of
    step i when ``i % eval_every == 0`` and after the last step. ``convergence_step`` is
    the first evaluated i with accuracy >= threshold (None if never). For 'inter'
    schedules, ``floss_steps`` flossing steps run just before training step i for each
    i in ``inter_at``.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES}")
    if not 0 < d < T or d % 2:
        raise ValueError(f"need an even delay 0 < d < T, got d={d}, T={T}")
    if not 0 <= transient < L:
        raise ValueError(f"need 0 <= transient < L, got transient={transient}, L={L}")
    params, Q0, gen = init_network(seed, N=N, B=B, k=k, g=g)  # gen then feeds train/floss data
    test_gen = torch.Generator().manual_seed(2**31 + int(seed))  # test batches: own stream
    task_opt = _adam(list(params.values()), lr)
    floss_opt = _adam([params["J"], params["b"], params["W_in"]], floss_lr)
    pre = schedule in ("pre", "pre+inter")
    inter = set(inter_at) if schedule in ("inter", "pre+inter") else set()

    floss_times: list[float] = []
    train_times: list[float] = []
    if pre:
        _floss_phase(params, Q0, floss_opt, gen, floss_steps, L, transient, floss_times)

    convergence_step = None
    acc = float("nan")
    history = []
    for i in range(steps):
        if i in inter:
            _floss_phase(params, Q0, floss_opt, gen, floss_steps, L, transient, floss_times)
        t0 = time.perf_counter()
        train_step(params, task_opt, gen, B=B, T=T, d=d, clip=clip)
        train_times.append(time.perf_counter() - t0)
        if i % eval_every == 0 or i == steps - 1:
            acc = evaluate(params, test_gen, n_test=n_test, T=T, d=d)
            history.append((i, acc))
            if convergence_step is None and acc >= threshold:
                convergence_step = i

    med = lambda xs: statistics.median(xs) if xs else float("nan")  # noqa: E731
    return {
        "seed": seed,
        "schedule": schedule,
        "success": convergence_step is not None,
        "convergence_step": convergence_step,
        "final_acc": acc,
        "floss_seconds": sum(floss_times),
        "train_seconds": sum(train_times),
        "floss_step_ms_median": 1e3 * med(floss_times),
        "train_step_ms_median": 1e3 * med(train_times),
        "n_floss_steps": len(floss_times),
        "n_train_steps": len(train_times),
        "history": history,
    }


def run_comparison(seeds, schedules, **kw) -> list[dict]:
    """Loop over schedules and seeds, one network at a time."""
    return [run_one(seed, schedule=sch, **kw) for sch in schedules for seed in seeds]


# ------------------------------------------------------------------------- timings
def time_floss_step(N: int = 80, k: int = 75, L: int = 55, reps: int = 20, *, seed: int = 0,
                    transient: int = 16) -> float:
    """Median wall seconds of one flossing step (forward, backward through QRs, Adam)."""
    params, Q0, gen = init_network(seed, N=N, k=k)
    opt = _adam([params["J"], params["b"], params["W_in"]], 1e-3)
    floss_step(params, Q0, opt, gen, L=L, transient=min(transient, L - 1))  # warm-up
    times: list[float] = []
    _floss_phase(params, Q0, opt, gen, reps, L, min(transient, L - 1), times)
    return statistics.median(times)


def time_train_step(N: int = 80, B: int = 16, T: int = 300, reps: int = 10, *, seed: int = 0,
                    d: int = 20) -> float:
    """Median wall seconds of one task training step (forward, backward, clipping, Adam)."""
    params, _, gen = init_network(seed, N=N, B=B, k=1)
    opt = _adam(list(params.values()), 1e-3)
    train_step(params, opt, gen, B=B, T=T, d=d)  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        train_step(params, opt, gen, B=B, T=T, d=d)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ----------------------------------------------------------------------------- CLI
def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=2, help="number of seeds (0..n-1)")
    ap.add_argument("--steps", type=int, default=3001)
    ap.add_argument("--floss-steps", type=int, default=500)
    ap.add_argument("--schedules", default="none,pre")
    ap.add_argument("--d", type=int, default=20)
    ap.add_argument("--N", type=int, default=80)
    ap.add_argument("--k", type=int, default=75)
    ap.add_argument("--T", type=int, default=300)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--threads", type=int, default=0,
                    help="torch.set_num_threads(n) if n > 0; default: leave torch's default")
    a = ap.parse_args(argv)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    schedules = [x.strip() for x in a.schedules.split(",") if x.strip()]
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, dtype=float32, CPU; "
          f"N={a.N} k={a.k} d={a.d} T={a.T}")
    results = []
    for sch in schedules:
        for seed in range(a.seeds):
            r = run_one(seed, schedule=sch, steps=a.steps, floss_steps=a.floss_steps, d=a.d,
                        N=a.N, k=a.k, T=a.T, eval_every=a.eval_every)
            results.append(r)
            fl = (f"{r['floss_step_ms_median']:.1f} ms/floss-step ({r['n_floss_steps']} steps, "
                  f"{r['floss_seconds']:.2f} s)" if r["n_floss_steps"] else "no flossing")
            print(f"[{sch:>9} seed {seed}] {fl}; {r['train_step_ms_median']:.1f} ms/train-step "
                  f"({r['n_train_steps']} steps, {r['train_seconds']:.2f} s); final_acc={r['final_acc']:.3f} "
                  f"success={r['success']} conv={r['convergence_step']}")
    ft = [r["floss_step_ms_median"] for r in results if r["n_floss_steps"]]
    tt = [r["train_step_ms_median"] for r in results]
    print("median per flossing step: " + (f"{statistics.median(ft):.2f} ms" if ft else "n/a"))
    print(f"median per training step: {statistics.median(tt):.2f} ms")
    return results


if __name__ == "__main__":
    main()
