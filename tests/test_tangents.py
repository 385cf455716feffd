"""Tests for the analytic tangents of the standard cells (floss_core.adapters.tangents) and the fast flossing
window built on them (adapters.window, fastqr.layered_tangent_logs, lyapunov's 'cholesky64_fused').

Known answers: every tangent map and explicit Jacobian equals ``torch.func.jacrev`` of the adapted step;
the flossing loss and its gradient w.r.t. every weight equal the forward-mode AD path's (Householder QR,
one tangent per step, the path before issue 17 item 4) to rounding; the window kernels pass gradcheck in
float64. Tiny sizes (hidden <= 5), float64 for exact comparisons.
"""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from floss_core.adapters import stepper, window
from floss_core.adapters.regularizer import flossing_loss_term
from floss_core.adapters.stepper import module_step
from floss_core.adapters.tangents import CellTangent, cell_tangent
from floss_core.fastqr import jacobian_tangent_logs, layered_tangent_logs
from floss_core.lyapunov import QR_METHODS, lyapunov_spectrum

C, H, B = 3, 4, 2
# (class, kwargs): every kind, 1 and 2 layers, bias on and off, tanh and relu
CASES = {
    "rnn1_tanh": (nn.RNN, dict(num_layers=1)),
    "rnn2_relu": (nn.RNN, dict(num_layers=2, nonlinearity="relu")),
    "rnn2_nobias": (nn.RNN, dict(num_layers=2, bias=False)),
    "rnn1_relu_nobias": (nn.RNN, dict(num_layers=1, nonlinearity="relu", bias=False)),
    "gru1": (nn.GRU, dict(num_layers=1)),
    "gru2_nobias": (nn.GRU, dict(num_layers=2, bias=False)),
    "gru2": (nn.GRU, dict(num_layers=2)),
    "lstm1_nobias": (nn.LSTM, dict(num_layers=1, bias=False)),
    "lstm2": (nn.LSTM, dict(num_layers=2)),
    "lstm3": (nn.LSTM, dict(num_layers=3)),
    "rnncell_relu": (nn.RNNCell, dict(nonlinearity="relu")),
    "grucell": (nn.GRUCell, dict()),
    "lstmcell_nobias": (nn.LSTMCell, dict(bias=False)),
}


def _module(name, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    cls, kw = CASES[name]
    return cls(C, H, **kw).to(dtype)


def _state(st, gen, *lead, relu=False):
    s = torch.randn(*lead, st.dim, generator=gen, dtype=torch.float64)
    return s.abs() + 0.1 if relu else s        # a relu net away from its kink


def _jac(st, s, x):
    """∂step/∂state at one (unbatched) point by reverse mode, (D, D)."""
    return torch.func.jacrev(lambda v: st.step(v[None], None if x is None else x[None])[0])(s)


@pytest.mark.parametrize("name", list(CASES))
def test_analytic_tangent_equals_jacrev_batched_unbatched_and_without_input(name):
    m, gen = _module(name), torch.Generator().manual_seed(1)
    st = module_step(m)
    assert isinstance(st.tangent, CellTangent)
    relu = "relu" in name
    state = _state(st, gen, B, relu=relu)
    x = torch.randn(B, C, generator=gen, dtype=torch.float64)
    Q = torch.randn(B, st.dim, 3, generator=gen, dtype=torch.float64)
    got = st.tangent(state, x, None, Q)                       # new_state is not needed
    got_j = st.tangent.jacobian(state, x)
    for b in range(B):
        J = _jac(st, state[b], x[b])
        torch.testing.assert_close(got[b], J @ Q[b], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(got_j[b], J, rtol=1e-10, atol=1e-12)
    # unbatched: state (D,), x (C,), Q (D, k)
    torch.testing.assert_close(st.tangent(state[0], x[0], None, Q[0]), _jac(st, state[0], x[0]) @ Q[0],
                               rtol=1e-10, atol=1e-12)
    # an autonomous step (x None means zero input)
    torch.testing.assert_close(st.tangent(state, None, None, Q)[0], _jac(st, state[0], None) @ Q[0],
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["rnn2_relu", "gru2", "lstm2", "lstm3", "lstmcell_nobias"])
def test_per_layer_jacobians_compose_to_the_full_jacobian(name):
    """``layers`` (what the window kernel propagates) composes, block lower-triangular in the layer-major
    order, to the explicit Jacobian."""
    m, gen = _module(name), torch.Generator().manual_seed(2)
    st = module_step(m)
    T = 3
    states = _state(st, gen, T, B, relu="relu" in name)
    xs = torch.randn(T, B, C, generator=gen, dtype=torch.float64)
    As, Bs, cells, order = st.tangent.layers(states, xs)
    full = st.tangent.jacobian(states, xs)
    if order is not None:
        full = full[..., order, :][..., order]
    if cells is not None:             # an LSTM layer's c columns are diagonal: [diag(cells[0]); diag(cells[1])]
        As = [torch.cat([A, torch.cat([torch.diag_embed(c[..., 0, :]), torch.diag_embed(c[..., 1, :])], dim=-2)],
                        dim=-1) for A, c in zip(As, cells)]
    n = As[0].shape[-1]
    rows, col = [], 0
    for l, A in enumerate(As):        # layer l's rows: its own block, plus B_l (rows of the new h below)
        own = torch.zeros(T, B, n, st.dim, dtype=torch.float64)
        own[..., col:col + n] = A
        if l:
            own = own + Bs[l - 1] @ rows[-1][..., :H, :]
        rows.append(own)
        col += n
    torch.testing.assert_close(torch.cat(rows, dim=-2), full, rtol=1e-10, atol=1e-12)


def test_analytic_tangent_parameter_gradients_equal_forward_mode_ad(monkeypatch):
    """Flossing backpropagates through the tangents into the weights: reverse mode through the analytic
    tangent gives forward-mode AD's (the stepper's fallback) gradients."""
    for name in ("rnn2_relu", "gru2", "lstm2"):
        m, gen = _module(name), torch.Generator().manual_seed(4)
        st = module_step(m)
        with monkeypatch.context() as mp:
            mp.setattr(stepper, "cell_tangent", lambda *a: None)
            fwd = module_step(m).tangent
        assert not isinstance(fwd, CellTangent)
        state = _state(st, gen, B, relu="relu" in name).requires_grad_(True)
        x = torch.randn(B, C, generator=gen, dtype=torch.float64)
        Q = torch.randn(B, st.dim, 2, generator=gen, dtype=torch.float64)
        grads = []
        for tangent in (st.tangent, fwd):
            m.zero_grad()
            state.grad = None
            tangent(state, x, None, Q).square().sum().backward()
            # (a relu layer's tangent does not depend on its input weights: None there, zeros in the AD path)
            grads.append([torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in m.parameters()]
                         + [torch.zeros_like(state) if state.grad is None else state.grad.clone()])
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_no_analytic_tangent_for_unknown_kinds():
    assert cell_tangent("rnn", [], 3, torch.sigmoid) is None
    assert cell_tangent("mystery", [], 3, torch.tanh) is None


# ------------------------------------------------------------------ the flossing window: fast vs AD path
def _loss_and_grads(m, x, monkeypatch, path, **kw):
    with monkeypatch.context() as mp:
        if path == "forward_ad":                               # the path before item 4
            mp.setattr(stepper, "cell_tangent", lambda *a: None)
        else:
            mp.setattr(window, "EXPLICIT", path == "explicit")
        m.zero_grad()
        loss = flossing_loss_term(m, x, **kw)
        loss.backward()
    return loss.detach(), [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in m.parameters()]


@pytest.mark.parametrize("name", ["rnn1_tanh", "rnn2_relu", "gru1", "gru2_nobias", "lstm1_nobias", "lstm2",
                                  "lstm3", "lstmcell_nobias"])
@pytest.mark.parametrize("kw", [dict(k=3), dict(k=4, transient=2, state_horizon=None),
                                dict(k=2, qr_every=2, state_horizon=2)], ids=["default", "full", "qr2"])
def test_flossing_loss_and_weight_gradients_equal_the_forward_ad_path(name, kw, monkeypatch):
    m = _module(name)
    gen = torch.Generator().manual_seed(5)
    cell = isinstance(m, (nn.RNNCell, nn.GRUCell, nn.LSTMCell))
    x = torch.randn(9, 2, C, generator=gen, dtype=torch.float64)  # two sequences, time-major
    if "relu" in name:
        x = x.abs()
    ref_loss, ref = _loss_and_grads(m, x, monkeypatch, "forward_ad", **kw)
    for path in ("explicit", "columns"):
        loss, grads = _loss_and_grads(m, x, monkeypatch, path, **kw)
        torch.testing.assert_close(loss, ref_loss, rtol=1e-10, atol=1e-12)
        for a, b in zip(grads, ref):
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-11)
    assert cell or m.num_layers >= 1


def test_float32_window_agrees_with_the_forward_ad_path(monkeypatch):
    """float32, a 16-unit LSTM: the float64-Gram CholeskyQR path and Householder agree to float32 rounding."""
    torch.manual_seed(0)
    m = nn.LSTM(3, 16, num_layers=2)
    x = torch.randn(20, 1, 3)
    ref_loss, ref = _loss_and_grads(m, x, monkeypatch, "forward_ad", k=8)
    loss, grads = _loss_and_grads(m, x, monkeypatch, "explicit", k=8)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-4, atol=1e-6)
    for a, b in zip(grads, ref):
        assert float((a - b).abs().max()) <= 1e-4 * float(b.abs().max()) + 1e-7


def test_batched_trajectory_equals_the_step_loop():
    m, gen = _module("lstm2"), torch.Generator().manual_seed(6)
    st = module_step(m)
    s0 = _state(st, gen, B)
    xs = torch.randn(10, B, C, generator=gen, dtype=torch.float64)
    for h in (1, 3, 4, 9):
        a = window._trajectory(st, xs, s0, h)
        b = window._trajectory_batched(st, xs, s0, h)
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-13)
        ga = torch.autograd.grad(a.square().sum(), m.weight_hh_l1)[0]
        gb = torch.autograd.grad(b.square().sum(), m.weight_hh_l1)[0]
        torch.testing.assert_close(gb, ga, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["rnn2_relu", "rnn1_tanh", "gru2_nobias", "lstm2", "lstm3", "lstm1_nobias",
                                  "lstmcell_nobias", "grucell"])
def test_states_at_the_cuts_equal_the_step_loop(name):
    """The no-grad states the truncated trajectory restarts from: torch's fused op (one call per layer, an
    LSTM's c from its gates) and the Python cell equations both give the step loop's."""
    m, gen = _module(name), torch.Generator().manual_seed(10)
    st = module_step(m)
    s0 = _state(st, gen, B)
    xs = torch.randn(10, B, C, generator=gen, dtype=torch.float64)
    s, ref = s0, []
    for t in range(10):
        s = st.step(s, xs[t])
        if t % 3 == 2 and t < 9:
            ref.append(s.detach())
    for got in (st.tangent.states_at(s0, xs, 3), st.tangent._states_at(s0, xs, 3)):
        assert len(got) == len(ref) == 3
        for a, b in zip(got, ref):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)
    assert st.tangent.states_at(s0, xs, 10) == [] == st.tangent._states_at(s0, xs, 10)   # no cut before T


def test_the_tangent_start_is_kept_between_calls_and_is_the_seeded_one():
    from floss_core.adapters.stepper import _q0
    like = torch.zeros(2, dtype=torch.float64)
    a = window._q0_cached(8, 3, 0, like)
    assert window._q0_cached(8, 3, 0, like) is a
    assert torch.equal(a, _q0(8, 3, 0, like))
    assert not torch.equal(window._q0_cached(8, 3, 1, like), a)               # the seed is part of the key
    m, x = _module("lstm2"), torch.randn(6, 1, C, dtype=torch.float64)
    assert torch.equal(flossing_loss_term(m, x, k=3), flossing_loss_term(m, x, k=3))


# ------------------------------------------------------------------ gradcheck, float64, tiny
def test_gradcheck_window_kernels():
    gen = torch.Generator().manual_seed(7)
    T, n0, n1, k = 4, 3, 4, 2

    def r(*s):
        return torch.randn(*s, generator=gen, dtype=torch.float64).requires_grad_(True)
    Q0 = torch.linalg.qr(torch.randn(n0 + n1, k, generator=gen, dtype=torch.float64))[0]
    A0, A1, B1 = r(T, 2, n0, n0), r(T, 2, n1, n1), r(T, 2, n1, 2)
    assert torch.autograd.gradcheck(lambda a, b, c: layered_tangent_logs([a, b], [c], Q0, feed=2), (A0, A1, B1))
    assert torch.autograd.gradcheck(lambda a, b, c: layered_tangent_logs([a, b], [c], Q0, feed=2,
                                                                         gram_dtype=None), (A0, A1, B1))
    C0, C1, D0 = r(T, 2, 2, 2), r(T, 2, 2, 2), r(T, 2, 4, 2)       # two LSTM-like layers, feed 2
    Q4 = torch.linalg.qr(torch.randn(8, k, generator=gen, dtype=torch.float64))[0]
    assert torch.autograd.gradcheck(lambda a, b, c, d, e: layered_tangent_logs([a, b], [c], Q4, feed=2,
                                                                               cells=[d, e]),
                                    (D0, r(T, 2, 4, 2), r(T, 2, 4, 2), C0, C1))
    Q2 = torch.linalg.qr(torch.randn(4, k, generator=gen, dtype=torch.float64))[0]  # one LSTM-like layer
    assert torch.autograd.gradcheck(lambda a, c: layered_tangent_logs([a], [], Q2, feed=2, cells=[c]),
                                    (r(T, 2, 4, 2), r(T, 2, 2, 2)))
    J = r(T, 2, 5, 5)
    assert torch.autograd.gradcheck(lambda j: jacobian_tangent_logs(j, Q0[:5]), (J,))


def test_window_kernel_falls_back_to_householder_where_a_gram_is_singular():
    """A step that maps a tangent direction to zero (a dead relu unit): no Cholesky; that step takes
    Householder and the logs equal the all-Householder kernel's (the lost direction at log(tiny))."""
    gen = torch.Generator().manual_seed(11)
    A = torch.randn(3, 1, 4, 4, generator=gen, dtype=torch.float64)
    A[1] = 0.0                                            # step 2 maps every direction to zero
    A.requires_grad_(True)
    Q0 = torch.eye(4, 2, dtype=torch.float64)
    fast = layered_tangent_logs([A], [], Q0, feed=4)
    assert fast.grad_fn.fallbacks == 1
    torch.testing.assert_close(fast, layered_tangent_logs([A], [], Q0, feed=4, gram_dtype=None))
    assert torch.isfinite(fast).all() and bool((fast[1] < -700).all())


def test_stacked_window_kernel_falls_back_to_householder_where_a_gram_is_singular():
    """The same for the stacked / LSTM kernel: a step that maps everything to zero takes Householder; the
    logs and the gradients (finite after that step) equal the all-Householder kernel's."""
    gen = torch.Generator().manual_seed(13)

    def r(*s):
        return torch.randn(*s, generator=gen, dtype=torch.float64)
    A0, A1, B1, C0, C1 = r(3, 2, 4, 2), r(3, 2, 4, 2), r(3, 2, 4, 2), r(3, 2, 2, 2), r(3, 2, 2, 2)
    for m in (A0, A1, B1, C0, C1):
        m[1] = 0.0                                        # step 2 maps every direction to zero
    mats = [m.requires_grad_(True) for m in (A0, A1, B1, C0, C1)]
    Q0 = torch.linalg.qr(r(8, 3))[0]
    out = []
    for gram in (torch.float64, None):
        logs = layered_tangent_logs(mats[:2], mats[2:3], Q0, feed=2, cells=mats[3:], gram_dtype=gram)
        grads = torch.autograd.grad(logs[2].sum(), mats)   # the last step's logs (finite) drive the gradient
        out.append((logs, grads))
    assert out[0][0].grad_fn.fallbacks == 1
    torch.testing.assert_close(out[0][0], out[1][0])
    for a, b in zip(out[0][1], out[1][1]):        # through the singular step the gradient is not finite
        torch.testing.assert_close(a, b, equal_nan=True)
        assert torch.isfinite(a[2]).all()


def test_gradcheck_fused_cholesky_qr():
    gen = torch.Generator().manual_seed(8)
    A = torch.randn(2, 5, 3, generator=gen, dtype=torch.float64, requires_grad=True)

    def f(a):
        Q, r = QR_METHODS["cholesky64_fused"](a)
        return Q, r
    assert torch.autograd.gradcheck(f, (A,))
    Qf, rf = QR_METHODS["cholesky64_fused"](A)
    Qh, rh = QR_METHODS["householder"](A)
    torch.testing.assert_close(rf, rh, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(Qf.abs(), Qh.abs(), rtol=1e-10, atol=1e-12)   # columns up to sign


def test_gradcheck_flossing_term_through_the_weights():
    """The whole fast path (per-layer Jacobians, the window kernel) in float64. The full trajectory
    gradient (state_horizon None): a truncated one is by design not the derivative of the loss's value
    (its detached states move with the weights too); the batched truncated trajectory is checked against
    the step loop above."""
    torch.manual_seed(9)
    rnn = nn.LSTM(2, 3, num_layers=2).double()
    x = torch.randn(6, 1, 2, dtype=torch.float64)

    class Term(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = rnn

        def forward(self, x):
            return flossing_loss_term(self.rnn, x, k=3, state_horizon=None)
    term = Term()
    names = ["rnn.weight_hh_l0", "rnn.weight_ih_l1", "rnn.bias_hh_l1"]
    base = dict(term.named_parameters())

    def f(*ws):
        return torch.func.functional_call(term, {**base, **dict(zip(names, ws))}, (x,))
    ws = tuple(base[n].detach().clone().requires_grad_(True) for n in names)
    assert torch.autograd.gradcheck(f, ws)


def test_step_tangents_must_match_the_steps():
    with pytest.raises(ValueError, match="one map per step"):
        lyapunov_spectrum(lambda s, x: s, torch.zeros(1, 2), 3, 1, step_tangents=[lambda q: q])


# ------------------------------------------------------------------ the cost bench runs
def test_cost_bench_runs_on_tiny_sizes(capsys):
    path = Path(__file__).resolve().parents[1] / "bench" / "bench_adapter_cost.py"
    spec = importlib.util.spec_from_file_location("bench_adapter_cost", path)
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench_adapter_cost"] = bench
    spec.loader.exec_module(bench)
    rows = bench.main(["--hidden", "4", "--k", "2", "--T", "5", "--batch", "2", "--reps", "1",
                       "--configs", "rnn:1,lstm:2", "--parts"])
    out = capsys.readouterr().out
    assert len(rows) == 2 and "| nn.LSTM, 2 layers |" in out and "+ window kernel" in out
    for r in rows:
        assert r["module_ms"] > 0 and r["floss_ms"] > 0 and r["old_ms"] > 0 and r["ratio"] > 0
