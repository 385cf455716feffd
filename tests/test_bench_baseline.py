"""Tests for the straightforward single-network speed baseline (bench/baseline.py)."""

import importlib.util
import math
from pathlib import Path

import pytest
import torch

_PATH = Path(__file__).resolve().parents[1] / "bench" / "baseline.py"
_spec = importlib.util.spec_from_file_location("bench_baseline", _PATH)
bl = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bl)


def _close(actual, expected, atol=1e-6, rtol=1e-6):
    # plain allclose: torch.testing.assert_close's first call imports torch.distributed (~1 s)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert torch.allclose(actual, expected, atol=atol, rtol=rtol), (actual, expected)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny matrices: with 2 OpenMP threads on a shared, busy machine every QR can wait
    milliseconds on the other core. One thread keeps this file fast; restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _independent_jacobians(params, x0, s):
    """Trajectory Jacobians dx_t/dx_{t-1} of the x-map by autograd, in float64.

    (torch.autograd.functional.jacobian rather than torch.func.jacrev: same result, but
    without jacrev's ~1.7 s first-call cost, which would blow the test's time budget.)
    """
    J = params["J"].detach().double()
    b = params["b"].detach().double().reshape(-1)
    W = params["W_in"].detach().double()
    C = W.shape[1]

    def f(x, s_t):  # x_t = J tanh(x_{t-1}) + b + W_in s_t / C, written independently
        return J @ torch.tanh(x) + b + W @ s_t / C

    x = x0.detach().double().reshape(-1)
    Ds = []
    for t in range(s.shape[0]):
        s_t = s[t].double().reshape(-1)
        Ds.append(torch.autograd.functional.jacobian(lambda y: f(y, s_t), x))
        x = f(x, s_t)
    return Ds


def _full_product_exponents(Ds, Q0, transient):
    """Growth of the full float64 product, the transient part divided out via QR uniqueness.

    Only well conditioned for a few leading directions over short windows.
    """
    P = Q0.double()
    for t, D in enumerate(Ds):
        if t == transient:
            r_tr = torch.linalg.qr(P).R.diagonal().abs().log()
        P = D @ P
    r_all = torch.linalg.qr(P).R.diagonal().abs().log()
    return (r_all - r_tr) / (len(Ds) - transient)


def _stepwise_float64_exponents(Ds, Q0, transient):
    Q = Q0.double()
    acc = torch.zeros(Q.shape[1], dtype=torch.float64)
    for t, D in enumerate(Ds):
        Q, R = torch.linalg.qr(D @ Q)
        if t >= transient:
            acc += R.diagonal().abs().log()
    return acc / (len(Ds) - transient)


@pytest.mark.parametrize("N,k", [(6, 6), (7, 3)])
def test_floss_exponents_match_independent_float64(N, k):
    L, transient = 14, 4
    params, Q0, gen = bl.init_network(3, N=N, B=2, k=k, g=1.5)
    s = torch.bernoulli(torch.full((L, 1, 1), 0.5), generator=gen)
    x0 = params["h0"][:, :1].detach()
    with torch.no_grad():
        lam = bl.floss_exponents(params, x0, s, Q0, transient)
    Ds = _independent_jacobians(params, x0, s)
    assert lam.shape == (k,)
    _close(lam.double(), _stepwise_float64_exponents(Ds, Q0, transient),
                               atol=2e-4, rtol=1e-4)
    if k == N:  # sum of all exponents = average log|det D_t| after the transient
        logdet = sum(torch.linalg.slogdet(D).logabsdet for D in Ds[transient:]) / (L - transient)
        assert abs(lam.double().sum().item() - logdet.item()) < 5e-4
    else:  # leading exponents from the float64 product of all Jacobians, no re-orthonormalisation
        _close(lam.double(), _full_product_exponents(Ds, Q0, transient),
                                   atol=2e-4, rtol=1e-4)


def test_floss_loss_gradient_is_exact():
    """Everything, every QR included, is differentiated correctly: autograd vs central
    finite differences in float64 (a hand-rolled gradcheck; torch.autograd.gradcheck
    imports sympy, ~1 s)."""
    params, Q0, gen = bl.init_network(1, N=4, B=1, k=3)
    s = torch.bernoulli(torch.full((7, 1, 1), 0.5), generator=gen).double()
    p64 = {n: v.detach().double() for n, v in params.items()}
    x0, Q = p64["h0"][:, :1], Q0.double()
    names = ("J", "b", "W_in")

    def loss(**over):
        return torch.mean(bl.floss_exponents(dict(p64, **over), x0, s, Q, transient=2) ** 2)

    leaves = {n: p64[n].clone().requires_grad_(True) for n in names}
    grads = torch.autograd.grad(loss(**leaves), [leaves[n] for n in names])
    eps = 1e-6
    for n, g in zip(names, grads):
        fd = torch.zeros_like(g)
        for i in range(g.numel()):
            e = torch.zeros_like(g).reshape(-1)
            e[i] = eps
            e = e.reshape(g.shape)
            fd.reshape(-1)[i] = (loss(**{n: p64[n] + e}) - loss(**{n: p64[n] - e})) / (2 * eps)
        assert g.abs().max() > 0, n
        _close(g, fd, atol=1e-7, rtol=1e-5)


def test_delayed_xor_targets():
    gen = torch.Generator().manual_seed(0)
    d, T = 6, 25
    s, y = bl.delayed_xor_batch(gen, B=3, T=T, d=d)
    assert s.shape == (T, 1, 3) and y.shape == (T - d, 1, 3)
    for t in range(d, T):
        want = (s[t - d // 2, 0] != s[t - d, 0]).float()
        assert torch.equal(y[t - d, 0], want)


def test_clip_each_array_separately():
    a = torch.zeros(3, requires_grad=True)
    c = torch.zeros(2, requires_grad=True)
    a.grad = torch.tensor([3.0, 4.0, 0.0])  # norm 5 -> clipped to 0.03
    c.grad = torch.tensor([0.01, 0.0])  # norm 0.01 -> untouched
    bl.clip_each_([a, c], 0.03)
    assert math.isclose(a.grad.norm().item(), 0.03, rel_tol=1e-6)
    _close(a.grad, torch.tensor([0.018, 0.024, 0.0]))
    _close(c.grad, torch.tensor([0.01, 0.0]))


def test_adam_matches_reference_formula():
    p = torch.tensor([1.0, -2.0], requires_grad=True)
    opt = bl.Adam([p], lr=0.1)
    grads = [torch.tensor([0.5, -1.0]), torch.tensor([0.25, 3.0])]
    ref, m, v = torch.tensor([1.0, -2.0], dtype=torch.float64), 0.0, 0.0
    for t, g in enumerate(grads, start=1):
        opt.zero_grad()
        p.grad = g.clone()
        opt.step()
        g = g.double()
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        ref = ref - 0.1 * (m / (1 - 0.9**t)) / ((v / (1 - 0.999**t)).sqrt() + 1e-8)
    _close(p.detach().double(), ref, atol=1e-6, rtol=1e-6)


def test_init_matches_protocol():
    params, Q0, _ = bl.init_network(0, N=10, B=4, k=7)
    assert params["J"].shape == (10, 10) and params["W_in"].shape == (10, 1)
    assert params["w_out"].shape == (1, 10) and params["h0"].shape == (10, 4)
    assert params["J"].dtype == torch.float32
    assert torch.all((params["b"] >= 0) & (params["b"] <= 0.1))
    assert torch.allclose(params["c"], torch.tensor(0.001))
    _close(Q0.T @ Q0, torch.eye(7), atol=1e-5, rtol=0)
    again, Q0b, _ = bl.init_network(0, N=10, B=4, k=7)
    assert all(torch.equal(params[n], again[n]) for n in params) and torch.equal(Q0, Q0b)


@pytest.mark.parametrize("schedule", ["none", "pre+inter"])
def test_tiny_run_one(schedule):
    r = bl.run_one(0, schedule=schedule, steps=5, floss_steps=2, N=8, k=4, d=4, T=20,
                   L=12, transient=4, eval_every=2, inter_at=(1, 3))
    for key in ("success", "convergence_step", "final_acc", "floss_seconds", "train_seconds"):
        assert key in r
    assert isinstance(r["success"], bool)
    assert 0.0 <= r["final_acc"] <= 1.0
    assert r["n_train_steps"] == 5 and [i for i, _ in r["history"]] == [0, 2, 4]
    assert r["n_floss_steps"] == (0 if schedule == "none" else 6)
    assert (r["floss_seconds"] > 0) == (schedule != "none") and r["train_seconds"] > 0
    assert r["success"] == (r["convergence_step"] is not None)


def test_run_comparison_and_timers():
    rs = bl.run_comparison([0, 1], ["none", "pre"], steps=2, floss_steps=1, N=6, k=3, d=4, T=12,
                          L=10, transient=3)
    assert [(r["schedule"], r["seed"]) for r in rs] == [("none", 0), ("none", 1), ("pre", 0), ("pre", 1)]
    assert bl.time_floss_step(N=6, k=3, L=10, reps=2) > 0
    assert bl.time_train_step(N=6, B=2, T=30, reps=2) > 0
