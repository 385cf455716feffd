"""Tests for floss_core.models: analytic and JVP tangents against jacrev, GRU/LSTM against torch's
cells, ensemble members against single networks, shapes and validation."""
import math

import pytest
import torch

from floss_core import models as M
from floss_core.lyapunov import jvp_tangent

F64 = torch.float64
E, B, C = 2, 3, 2


def _params(cfg, seeds=(0, 1)):
    return {k: v.double() for k, v in M.init_ensemble(cfg, C, 1, list(seeds)).items()}


def _state_and_drive(cfg, p, seed=0):
    g = torch.Generator().manual_seed(seed)
    state = torch.randn(E, B, M.state_dim(cfg), generator=g, dtype=F64)
    u = M.drive(cfg, p, torch.randint(0, 2, (1, E, B, C), generator=g).double())[0]
    return state, u


def _jacrev_blocks(step, state):
    """Per-member one-step Jacobians (E, B, D, D) from torch.func.jacrev, and the largest entry of
    the cross-member blocks (must be 0: members are independent)."""
    full = torch.func.jacrev(step)(state)                  # (E, B, D, E, B, D)
    e, b, d = state.shape
    flat = full.reshape(e * b, d, e * b, d)
    blocks = torch.stack([flat[i, :, i, :] for i in range(e * b)]).reshape(e, b, d, d)
    off = flat.clone()
    for i in range(e * b):
        off[i, :, i, :] = 0
    return blocks, off.abs().max()


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("orthogonal", [False, True])
def test_rnn_analytic_tangent_equals_jacrev(bias, orthogonal):
    cfg = M.ModelConfig(arch="rnn", hidden=5, gain=1.7, bias=bias, orthogonal=orthogonal)
    p = _params(cfg)
    state, u = _state_and_drive(cfg, p)
    step = M.step_fn(cfg, p)
    blocks, cross = _jacrev_blocks(lambda s: step(s, u), state)
    assert cross == 0
    Q = torch.randn(E, B, 5, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    got = M.jacobian_fn(cfg, p)(state, u, step(state, u), Q)
    assert got.shape == (E, B, 5, 3)
    assert torch.allclose(got, blocks @ Q, atol=1e-12, rtol=0)
    # the derivative is taken at the PREVIOUS state: using the new one would be a different map
    wrong = p["J"][:, None] @ ((1 - torch.tanh(step(state, u)) ** 2)[..., None] * Q)
    assert not torch.allclose(wrong, blocks @ Q, atol=1e-3)


@pytest.mark.parametrize("arch", ["rnn", "gru", "lstm"])
def test_jvp_tangent_equals_jacrev(arch):
    cfg = M.ModelConfig(arch=arch, hidden=4, gain=2.0)
    p = _params(cfg)
    state, u = _state_and_drive(cfg, p, seed=2)
    d = M.state_dim(cfg)
    step = M.step_fn(cfg, p)
    blocks, cross = _jacrev_blocks(lambda s: step(s, u), state)
    assert cross == 0
    Q = torch.randn(E, B, d, 3, generator=torch.Generator().manual_seed(3), dtype=F64)
    got = jvp_tangent(step)(state, u, step(state, u), Q)
    assert torch.allclose(got, blocks @ Q, atol=1e-12, rtol=0)
    if arch != "rnn":
        assert M.jacobian_fn(cfg, p) is None  # gated cells use the JVP tangent by default


def test_lstm_tangent_space_has_dimension_2n():
    cfg = M.ModelConfig(arch="lstm", hidden=3)
    assert M.state_dim(cfg) == 6
    p = M.init_ensemble(cfg, 1, 1, [0], batch=2)
    assert p["h0"].shape == (1, 2, 6)
    assert M.state_dim(M.ModelConfig(arch="gru", hidden=3)) == 3


def _torch_cell(cls, p, e):
    n_in, n = p["W_ih"].shape[-1], p["W_hh"].shape[-1]
    cell = cls(n_in, n, bias="b_ih" in p).double()
    with torch.no_grad():
        cell.weight_ih.copy_(p["W_ih"][e])
        cell.weight_hh.copy_(p["W_hh"][e])
        if "b_ih" in p:
            cell.bias_ih.copy_(p["b_ih"][e])
            cell.bias_hh.copy_(p["b_hh"][e])
    return cell


@pytest.mark.parametrize("bias", [True, False])
def test_gru_step_equals_torch_grucell(bias):
    cfg = M.ModelConfig(arch="gru", hidden=4, gain=1.5, bias=bias)
    p = _params(cfg)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(6, E, B, C, generator=g, dtype=F64)
    h = torch.randn(E, B, 4, generator=g, dtype=F64)
    states = M.run(cfg, p, h, x)
    for e in range(E):
        cell, ref = _torch_cell(torch.nn.GRUCell, p, e), h[e]
        for t in range(6):
            ref = cell(x[t, e], ref)
            assert torch.allclose(states[t, e], ref, atol=1e-12), (e, t)


@pytest.mark.parametrize("bias", [True, False])
def test_lstm_step_equals_torch_lstmcell(bias):
    cfg = M.ModelConfig(arch="lstm", hidden=4, gain=1.5, bias=bias)
    p = _params(cfg)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(6, E, B, C, generator=g, dtype=F64)
    hc = torch.randn(E, B, 8, generator=g, dtype=F64)
    states = M.run(cfg, p, hc, x)
    for e in range(E):
        cell = _torch_cell(torch.nn.LSTMCell, p, e)
        h, c = hc[e, :, :4], hc[e, :, 4:]
        for t in range(6):
            h, c = cell(x[t, e], (h, c))
            assert torch.allclose(states[t, e], torch.cat([h, c], -1), atol=1e-12), (e, t)


def test_rnn_step_is_the_reference_form():
    # x_t = J tanh(x_{t-1}) + b + W_in s_t / C, readout w_out x_t + c
    cfg = M.ModelConfig(hidden=5)
    p = _params(cfg)
    g = torch.Generator().manual_seed(6)
    s = torch.randint(0, 2, (3, E, B, C), generator=g).double()
    x0 = torch.randn(E, B, 5, generator=g, dtype=F64)
    states = M.run(cfg, p, x0, s)
    x = x0
    for t in range(3):
        x = torch.einsum("enm,eBm->eBn", p["J"], torch.tanh(x)) + p["b"][:, None] \
            + torch.einsum("enc,eBc->eBn", p["W_in"], s[t]) / C
        assert torch.allclose(states[t], x, atol=1e-12)
    r = M.readout(cfg, p, states)
    assert r.shape == (3, E, B, 1)
    assert torch.allclose(r, torch.einsum("teBn,eon->teBo", states, p["w_out"]) + p["c"][:, None], atol=1e-12)


@pytest.mark.parametrize("arch", ["rnn", "gru", "lstm"])
def test_ensemble_member_equals_single_network(arch):
    cfg = M.ModelConfig(arch=arch, hidden=6, gain=1.3)
    ens = M.init_ensemble(cfg, C, 2, [3, 9, 4], batch=2)
    for i, s in enumerate([3, 9, 4]):
        one = M.init_network(cfg, C, 2, s, batch=2)
        assert set(one) == set(ens)
        for k in one:
            assert torch.equal(ens[k][i], one[k]), (k, s)
    assert not torch.equal(ens["W_hh" if arch != "rnn" else "J"][0], ens["W_hh" if arch != "rnn" else "J"][1])
    # forward passes of the ensemble equal single-network passes
    x = torch.randint(0, 2, (7, 3, 2, C), generator=torch.Generator().manual_seed(0)).float()
    states = M.run(cfg, ens, M.initial_state(ens, 2), x)
    for i, s in enumerate([3, 9, 4]):
        one = {k: v[None] for k, v in M.init_network(cfg, C, 2, s, batch=2).items()}
        alone = M.run(cfg, one, M.initial_state(one, 2), x[:, i:i + 1])
        assert torch.allclose(states[:, i], alone[:, 0], atol=1e-6)


# ------------------------------------------------------------------------------ fused rnn kernel
def _fused_inputs(seed=7, T=9, n=5):
    cfg = M.ModelConfig(hidden=n, gain=1.8)
    p = _params(cfg)
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(T, E, B, n, generator=g, dtype=F64)
    x0 = torch.randn(E, B, n, generator=g, dtype=F64)
    return cfg, p, u, x0


def test_fused_rnn_run_equals_the_step_loop_forward_and_backward():
    cfg, p, u, x0 = _fused_inputs()
    w = torch.randn(u.shape, generator=torch.Generator().manual_seed(8), dtype=F64)   # a generic loss
    grads = {}
    for fused in (True, False):
        J, uu, xx = (t.clone().requires_grad_(True) for t in (p["J"], u, x0))
        X = M.run_driven(cfg, {**p, "J": J}, xx, uu, fused=fused)
        (X * w).sum().backward()
        grads[fused] = (X.detach(), J.grad, uu.grad, xx.grad)
    for a, b in zip(grads[True], grads[False]):
        assert torch.allclose(a, b, atol=1e-12, rtol=0)


def test_fused_rnn_run_gradcheck():
    cfg, p, u, x0 = _fused_inputs(T=5, n=3)
    inputs = (u.requires_grad_(True), x0.requires_grad_(True), p["J"].clone().requires_grad_(True))
    run = lambda u, x0, J: M.run_driven(cfg, {**p, "J": J}, x0, u, fused=True)  # noqa: E731
    assert torch.autograd.gradcheck(run, inputs, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("bias", [True, False])
def test_fused_readout_kernel_equals_readout_of_the_step_loop_forward_and_backward(bias):
    # drive, recurrence and readout in one matmul per step: the same readouts and the same gradient
    # for every parameter (the readout, input weights, bias and initial state included) and the inputs
    cfg = M.ModelConfig(hidden=6, gain=1.7, bias=bias, relax_steps=3)
    base = {k: v.double() for k, v in M.init_ensemble(cfg, 2, 3, [1, 2, 3], batch=4).items()}
    g = torch.Generator().manual_seed(5)
    x = torch.randn(11, 3, 4, 2, generator=g, dtype=F64)
    w = torch.randn(11, 3, 4, 3, generator=g, dtype=F64)        # a generic loss on every readout
    got = {}
    for fused in (True, False):
        p = {k: v.clone().requires_grad_(True) for k, v in base.items()}
        xx = x.clone().requires_grad_(True)
        x0 = M.initial_state(p, 4)
        r = M.rnn_readouts(p, x0, xx) if fused else M.readout(cfg, p, M.run(cfg, p, x0, xx, fused=False))
        (r * w).sum().backward()
        got[fused] = [r.detach(), xx.grad] + [p[k].grad for k in sorted(p)]
    for a, b in zip(got[True], got[False]):
        assert torch.allclose(a, b, atol=1e-12, rtol=0)


def test_fused_readout_kernel_gradcheck():
    cfg = M.ModelConfig(hidden=3, gain=1.5, relax_steps=0)
    base = {k: v.double() for k, v in M.init_ensemble(cfg, 1, 2, [4, 5], batch=2).items()}
    x = torch.randn(5, 2, 2, 1, generator=torch.Generator().manual_seed(6), dtype=F64, requires_grad=True)
    names = sorted(base)

    def f(x, *vals):
        p = dict(zip(names, vals))
        return M.rnn_readouts(p, M.initial_state(p, 2), x)
    assert torch.autograd.gradcheck(f, (x, *(base[k].requires_grad_(True) for k in names)), eps=1e-6, atol=1e-7)


def test_run_uses_the_fused_kernel_with_the_same_numbers_in_float32():
    cfg = M.ModelConfig(hidden=8, gain=1.5)
    p = M.init_ensemble(cfg, C, 1, [0, 1], batch=B)
    x = torch.randint(0, 2, (20, E, B, C), generator=torch.Generator().manual_seed(9)).float()
    fused = M.run(cfg, p, M.initial_state(p, B), x)
    loop = M.run(cfg, p, M.initial_state(p, B), x, fused=False)
    assert torch.allclose(fused, loop, atol=1e-5, rtol=0)


def test_initialisation_statistics_and_gain():
    cfg = M.ModelConfig(hidden=200, gain=2.0, relax_steps=0)
    J = M.init_network(cfg, 1, 1, 0)["J"]
    assert abs(J.std().item() - 2.0 / math.sqrt(200)) < 0.01
    Jo = M.init_network(M.ModelConfig(hidden=50, gain=1.5, orthogonal=True, relax_steps=0), 1, 1, 0)["J"]
    assert torch.allclose(Jo @ Jo.T, 2.25 * torch.eye(50), atol=1e-4)
    g = M.init_network(M.ModelConfig(arch="gru", hidden=10, gain=3.0, relax_steps=0), 1, 1, 0)
    assert g["W_hh"].abs().max() <= 3.0 / math.sqrt(10) + 1e-6 and g["W_hh"].abs().max() > 1.0 / math.sqrt(10)
    assert "b" not in M.init_network(M.ModelConfig(bias=False, relax_steps=0), 1, 1, 0)


def test_relaxed_initial_state_is_the_autonomous_trajectory():
    cfg = M.ModelConfig(hidden=6, gain=1.5, relax_steps=7)
    p = M.init_network(cfg, 1, 1, 11, batch=2)
    raw = M.init_network(M.ModelConfig(hidden=6, gain=1.5, relax_steps=0), 1, 1, 11, batch=2)
    e = {k: v[None] for k, v in raw.items()}
    x = M.run(M.ModelConfig(hidden=6), e, e["h0"], torch.zeros(7, 1, 2, 1))[-1, 0]
    assert torch.allclose(p["h0"], x, atol=1e-6)


def test_initial_state_cycles_columns():
    p = {"h0": torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)}
    x = M.initial_state(p, 7)
    assert x.shape == (2, 7, 4)
    assert torch.equal(x[:, 3], p["h0"][:, 0]) and torch.equal(x[:, 6], p["h0"][:, 0])


def test_flossed_names_exclude_readout_and_initial_state():
    p = M.init_network(M.ModelConfig(hidden=3, relax_steps=0), 1, 1, 0)
    assert sorted(M.flossed_names(p)) == ["J", "W_in", "b"]
    q = M.init_network(M.ModelConfig(arch="lstm", hidden=3, relax_steps=0), 1, 1, 0)
    assert sorted(M.flossed_names(q)) == ["W_hh", "W_ih", "b_hh", "b_ih"]


@pytest.mark.parametrize("cfg,match", [
    (M.ModelConfig(arch="transformer"), r"unknown arch 'transformer'; choose one of rnn, gru, lstm"),
    (M.ModelConfig(hidden=0), r"hidden must be in 1\.\.4096, got 0"),
    (M.ModelConfig(gain=-1.0), r"gain must be a positive number"),
    (M.ModelConfig(gain=float("nan")), r"gain must be a positive number"),
    (M.ModelConfig(arch="gru", orthogonal=True), r"orthogonal initialisation is only defined for arch 'rnn'"),
    (M.ModelConfig(relax_steps=-1), r"relax_steps must be >= 0"),
])
def test_validate_model(cfg, match):
    with pytest.raises(ValueError, match=match):
        M.validate_model(cfg)
