"""Tests for floss_core.lyapunov.lyapunov_spectrum: closed forms, identities, gradients, errors.

float64 throughout where exactness matters; every map is tiny so the file runs in a few seconds.
"""
import math
import warnings

import pytest
import torch

from floss_core import models as M
from floss_core.lyapunov import (LyapunovAccuracyWarning, jvp_tangent, long_term_jacobian, lyapunov_spectrum,
                                 ordered_sum, random_orthonormal, volume_growth)

F64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _tanh_rnn(n, *, gain=2.0, seed=0, batch=()):
    """A random tanh RNN x -> J tanh(x) + b (+ input), float64, and a start state."""
    g = _gen(seed)
    J = gain * torch.randn(n, n, generator=g, dtype=F64) / math.sqrt(n)
    b = 0.1 * torch.randn(n, generator=g, dtype=F64)
    x0 = torch.randn(*batch, n, generator=g, dtype=F64)

    def step(s, x):
        out = torch.tanh(s) @ J.T + b
        return out if x is None else out + x
    return step, x0, J


def _tanh_jac(J):
    """Analytic tangent of x -> J tanh(x) + b: D_t Q = J diag(1 - tanh²(x_{t-1})) Q."""
    return lambda s, x, new, Q: J @ ((1 - torch.tanh(s) ** 2)[..., None] * Q)


def _diag_jac(a):
    return lambda s, x, new, Q: a[..., None] * Q


# ------------------------------------------------------------------------------ closed forms
A = torch.tensor([1.3, -0.4, 0.9, 2.1, -0.15, 0.6], dtype=F64)   # distinct |a_i|, some negative
EXPECTED = torch.sort(A.abs().log(), descending=True).values


@pytest.mark.parametrize("k", [1, 3, 6])
@pytest.mark.parametrize("qr_every", [1, 4])
def test_diagonal_map_random_start_after_transient(k, qr_every):
    # a random start frame aligns with the top-k axes during the transient (gaps >= 0.37 per step)
    lam = lyapunov_spectrum(lambda s, x: s * A, torch.ones(6, dtype=F64), 150, k, transient=80,
                            qr_every=qr_every, generator=_gen(1), jacobian=_diag_jac(A))
    assert lam.shape == (k,)
    assert torch.allclose(lam, EXPECTED[:k], atol=1e-6, rtol=0)


@pytest.mark.parametrize("k", [1, 2, 4, 6])
@pytest.mark.parametrize("qr_every", [1, 3])
def test_diagonal_map_no_transient_exact_with_axis_start(k, qr_every):
    # start on the top-k axes: every R_ii is exactly |a_i|^steps, no transient needed
    order = torch.argsort(A.abs(), descending=True)
    Q0 = torch.eye(6, dtype=F64)[:, order[:k]]
    lam = lyapunov_spectrum(lambda s, x: s * A, torch.ones(6, dtype=F64), 20, k, Q0=Q0, qr_every=qr_every)
    assert torch.allclose(lam, EXPECTED[:k], atol=1e-12, rtol=0)
    lam = lyapunov_spectrum(lambda s, x: s * A, torch.ones(6, dtype=F64), 20, k, Q0=Q0, qr_every=qr_every,
                            jacobian=_diag_jac(A))
    assert torch.allclose(lam, EXPECTED[:k], atol=1e-12, rtol=0)


def test_diagonal_map_without_transient_converges_like_one_over_t():
    # from a random frame and no transient the error is O(1/T): small at T=4000, not yet at T=20
    step, jac = (lambda s, x: s * A), _diag_jac(A)
    long = lyapunov_spectrum(step, torch.ones(6, dtype=F64), 4000, 3, generator=_gen(2), jacobian=jac)
    assert torch.allclose(long, EXPECTED[:3], atol=2e-3, rtol=0)
    short = lyapunov_spectrum(step, torch.ones(6, dtype=F64), 20, 3, generator=_gen(2), jacobian=jac)
    assert not torch.allclose(short, EXPECTED[:3], atol=1e-6, rtol=0)


@pytest.mark.parametrize("qr_every", [1, 5])
def test_orthogonal_map_has_zero_exponents(qr_every):
    O, _ = torch.linalg.qr(torch.randn(7, 7, generator=_gen(3), dtype=F64))
    lam = lyapunov_spectrum(lambda s, x: s @ O.T, torch.ones(7, dtype=F64), 50, 7, qr_every=qr_every,
                            generator=_gen(4))
    assert torch.allclose(lam, torch.zeros(7, dtype=F64), atol=1e-12)


@pytest.mark.parametrize("a", [0.5, 1.7])
def test_scaled_identity_gives_log_a(a):
    lam = lyapunov_spectrum(lambda s, x: a * s, torch.ones(5, dtype=F64), 30, 4, transient=5,
                            generator=_gen(5))
    assert torch.allclose(lam, torch.full((4,), math.log(a), dtype=F64), atol=1e-12)


def test_linear_map_with_batch_dims_uses_each_systems_own_map():
    # leading dims are independent systems: (2, 3, D) states, a different diagonal per system
    a = torch.rand(2, 3, 4, generator=_gen(6), dtype=F64) * 2 + 0.1
    lam = lyapunov_spectrum(lambda s, x: s * a, torch.ones(2, 3, 4, dtype=F64), 20, 4,
                            Q0=torch.eye(4, dtype=F64))
    assert lam.shape == (2, 3, 4)
    assert torch.allclose(lam, torch.sort(a.log(), dim=-1, descending=True).values, atol=1e-12)


# ------------------------------------------------------------------------------ identities
def test_volume_identity_sum_equals_mean_log_det():
    # k = D: the sum of all exponents is the time average of log|det D_t| (after the transient)
    cfg = M.ModelConfig(hidden=6, gain=2.0)
    p = {k: v.double() for k, v in M.init_ensemble(cfg, 1, 1, [0, 1]).items()}
    inputs = torch.randint(0, 2, (60, 2, 1, 1), generator=_gen(7)).double()
    u, step, x0 = M.drive(cfg, p, inputs), M.step_fn(cfg, p), p["h0"]
    lam = lyapunov_spectrum(step, x0, u, 6, jacobian=M.jacobian_fn(cfg, p), transient=10, generator=_gen(8))
    vol = volume_growth(step, x0, u, transient=10)
    assert lam.shape == (2, 1, 6) and vol.shape == (2, 1)
    assert torch.allclose(lam.sum(-1), vol, atol=1e-10, rtol=0)
    assert (vol.abs() > 0.1).all()  # a non-trivial value, not 0 == 0


def test_volume_identity_autonomous_gru():
    cfg = M.ModelConfig(arch="gru", hidden=4, gain=3.0)
    p = {k: v.double() for k, v in M.init_ensemble(cfg, 1, 1, [3]).items()}
    u = M.drive(cfg, p, torch.zeros(40, 1, 1, 1, dtype=F64))
    step = M.step_fn(cfg, p)
    lam = lyapunov_spectrum(step, p["h0"], u, 4, transient=5, generator=_gen(9))
    assert torch.allclose(lam.sum(-1), volume_growth(step, p["h0"], u, transient=5), atol=1e-10, rtol=0)


def test_nesting_k1_equals_top_exponent_of_full_run():
    step, x0, J = _tanh_rnn(6, gain=2.5, seed=1)
    Q0 = random_orthonormal(6, 6, generator=_gen(10), dtype=F64)
    kw = dict(transient=50, jacobian=_tanh_jac(J))
    full = lyapunov_spectrum(step, x0, 400, 6, Q0=Q0, **kw)
    one = lyapunov_spectrum(step, x0, 400, 1, Q0=Q0[:, :1], **kw)
    assert full[0] > full[1] + 0.05  # a clear gap, so the first column carries λ_1
    assert torch.allclose(one[0], full[0], atol=1e-10, rtol=0)
    # and k = 3 nests the same way
    three = lyapunov_spectrum(step, x0, 400, 3, Q0=Q0[:, :3], **kw)
    assert torch.allclose(three, full[:3], atol=1e-10, rtol=0)


@pytest.mark.parametrize("qr_every", [1, 3])
def test_cholesky_qr_matches_householder(qr_every):
    step, x0, _ = _tanh_rnn(8, gain=2.0, seed=2, batch=(2,))
    kw = dict(transient=10, qr_every=qr_every, Q0=random_orthonormal(8, 5, generator=_gen(11), dtype=F64))
    h = lyapunov_spectrum(step, x0, 100, 5, qr="householder", **kw)
    for qr in ("cholesky", "cholesky64"):
        c = lyapunov_spectrum(step, x0, 100, 5, qr=qr, **kw)
        assert torch.allclose(h, c, atol=1e-10, rtol=0)


def test_autonomous_and_driven_inputs():
    step, x0, _ = _tanh_rnn(5, seed=3)
    Q0 = random_orthonormal(5, 3, generator=_gen(12), dtype=F64)
    auto = lyapunov_spectrum(step, x0, 80, 3, Q0=Q0, transient=10)
    zeros = lyapunov_spectrum(step, x0, torch.zeros(80, 5, dtype=F64), 3, Q0=Q0, transient=10)
    assert torch.allclose(auto, zeros, atol=1e-12, rtol=0)
    drive = torch.randn(80, 5, generator=_gen(13), dtype=F64)
    driven, final = lyapunov_spectrum(step, x0, drive, 3, Q0=Q0, transient=10, return_state=True)
    assert driven.shape == (3,) and torch.isfinite(driven).all()
    assert not torch.allclose(driven, auto, atol=1e-3)  # the input really reaches the dynamics
    x = x0
    for t in range(80):
        x = step(x, drive[t])
    assert torch.allclose(final, x, atol=1e-12)


def test_analytic_jacobian_and_jvp_give_the_same_spectrum():
    cfg = M.ModelConfig(hidden=6, gain=2.0)
    p = {k: v.double() for k, v in M.init_ensemble(cfg, 1, 1, [4, 5]).items()}
    u = M.drive(cfg, p, torch.randint(0, 2, (50, 2, 1, 1), generator=_gen(14)).double())
    step = M.step_fn(cfg, p)
    Q0 = random_orthonormal(6, 4, generator=_gen(15), dtype=F64)
    analytic = lyapunov_spectrum(step, p["h0"], u, 4, jacobian=M.jacobian_fn(cfg, p), Q0=Q0, transient=5)
    jvp = lyapunov_spectrum(step, p["h0"], u, 4, jacobian=jvp_tangent(step), Q0=Q0, transient=5)
    assert torch.allclose(analytic, jvp, atol=1e-12, rtol=0)


def test_precomputed_trajectory_gives_the_same_exponents_and_gradients():
    # the flossing path precomputes the states with the fused kernel and passes them as ``trajectory``
    cfg = M.ModelConfig(hidden=5, gain=2.0)
    p = {k: v.double() for k, v in M.init_ensemble(cfg, 1, 1, [1, 2]).items()}
    u = M.drive(cfg, p, torch.randint(0, 2, (30, 2, 1, 1), generator=_gen(23)).double())
    Q0 = random_orthonormal(5, 3, generator=_gen(24), dtype=F64)
    out = {}
    for fused in (True, False):
        J = p["J"].clone().requires_grad_(True)
        q = {**p, "J": J}
        traj = M.run_driven(cfg, q, p["h0"], u, fused=True) if fused else None
        lam = lyapunov_spectrum(M.step_fn(cfg, q), p["h0"], u, 3, jacobian=M.jacobian_fn(cfg, q), Q0=Q0,
                                transient=5, trajectory=traj)
        (lam * torch.tensor([1.0, -2.0, 0.5], dtype=F64)).sum().backward()
        out[fused] = (lam.detach(), J.grad)
    assert torch.allclose(out[True][0], out[False][0], atol=1e-12, rtol=0)
    assert torch.allclose(out[True][1], out[False][1], atol=1e-10, rtol=0)


# ------------------------------------------------------------------------------ gradients
@pytest.mark.parametrize("qr", ["householder", "cholesky"])
def test_gradcheck_through_spectrum_wrt_recurrent_weights(qr):
    n, k = 4, 2
    g = _gen(16)
    J0 = (2.0 * torch.randn(n, n, generator=g, dtype=F64) / math.sqrt(n)).requires_grad_(True)
    x0 = torch.randn(n, generator=g, dtype=F64)
    inputs = 0.3 * torch.randn(10, n, generator=g, dtype=F64)
    Q0 = random_orthonormal(n, k, generator=g, dtype=F64)

    def spectrum(J):
        return lyapunov_spectrum(lambda s, x: torch.tanh(s) @ J.T + x, x0, inputs, k, Q0=Q0, transient=2, qr=qr)

    lam = spectrum(J0)
    assert lam[0] - lam[1] > 1e-3  # distinct exponents: the sort is differentiable here
    assert torch.autograd.gradcheck(spectrum, (J0,), eps=1e-6, atol=1e-6)


def test_gradcheck_analytic_rnn_tangent_and_qr_every():
    cfg = M.ModelConfig(hidden=3, gain=2.0)
    p = {k: v.double() for k, v in M.init_ensemble(cfg, 1, 1, [6]).items()}
    u = M.drive(cfg, p, torch.randint(0, 2, (12, 1, 1, 1), generator=_gen(17)).double())
    Q0 = random_orthonormal(3, 2, generator=_gen(18), dtype=F64)

    def spectrum(J):
        q = {**p, "J": J}
        return lyapunov_spectrum(M.step_fn(cfg, q), p["h0"], u, 2, jacobian=M.jacobian_fn(cfg, q), Q0=Q0,
                                 qr_every=2, transient=2)

    assert torch.autograd.gradcheck(spectrum, (p["J"].clone().requires_grad_(True),), eps=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------ ensembles
@pytest.mark.parametrize("arch", ["rnn", "gru", "lstm"])
def test_ensemble_equals_separate_single_runs(arch):
    cfg = M.ModelConfig(arch=arch, hidden=5, gain=2.0)
    seeds = [0, 1, 2]
    d = M.state_dim(cfg)
    Q0 = random_orthonormal(d, 3, generator=_gen(19), dtype=F64)
    bits = torch.randint(0, 2, (40, 1, 1, 1), generator=_gen(20)).double()

    def spectrum(p):
        p = {k: v.double() for k, v in p.items()}
        u = M.drive(cfg, p, bits.expand(40, len(p["h0"]), 1, 1))
        return lyapunov_spectrum(M.step_fn(cfg, p), p["h0"], u, 3, jacobian=M.jacobian_fn(cfg, p), Q0=Q0,
                                 transient=5)

    together = spectrum(M.init_ensemble(cfg, 1, 1, seeds))
    assert together.shape == (3, 1, 3)
    for i, s in enumerate(seeds):
        alone = spectrum(M.init_ensemble(cfg, 1, 1, [s]))
        assert torch.allclose(together[i], alone[0], atol=1e-10, rtol=0), (arch, s)
    assert not torch.allclose(together[0], together[1], atol=1e-3)  # the members really differ


def test_float32_ensemble_equals_separate_runs():
    # the default dtype path the training loop uses
    cfg = M.ModelConfig(hidden=16, gain=2.0)
    Q0 = random_orthonormal(16, 4, generator=_gen(21))
    bits = torch.randint(0, 2, (60, 1, 1, 1), generator=_gen(22)).float()

    def spectrum(p):
        u = M.drive(cfg, p, bits.expand(60, len(p["h0"]), 1, 1))
        return lyapunov_spectrum(M.step_fn(cfg, p), p["h0"], u, 4, jacobian=M.jacobian_fn(cfg, p), Q0=Q0,
                                 transient=10)

    together = spectrum(M.init_ensemble(cfg, 1, 1, [7, 8]))
    for i, s in enumerate([7, 8]):
        assert torch.allclose(together[i], spectrum(M.init_ensemble(cfg, 1, 1, [s]))[0], atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("kwargs,inputs,match", [
    (dict(k=0), 10, r"k must be in 1\.\.4, got 0"),
    (dict(k=5), 10, r"k must be in 1\.\.4, got 5"),
    (dict(k=2, transient=10), 10, r"steps \(10\) must exceed the transient \(10"),
    (dict(k=2, transient=12), 10, r"must exceed the transient"),
    (dict(k=2, transient=6, qr_every=5), 10, r"rounded up to a multiple of qr_every=5"),
    (dict(k=2, transient=-1), 10, r"transient must be >= 0, got -1"),
    (dict(k=2, qr_every=0), 10, r"qr_every must be >= 1, got 0"),
    (dict(k=2), 0, r"steps \(0\) must exceed"),
    (dict(k=2, qr="gram"), 10, r"unknown qr 'gram'; choose one of householder, cholesky, cholesky64"),
])
def test_bad_arguments_raise_clear_value_errors(kwargs, inputs, match):
    k = kwargs.pop("k")
    with pytest.raises(ValueError, match=match) as info:
        lyapunov_spectrum(lambda s, x: 0.5 * s, torch.ones(4, dtype=F64), inputs, k, **kwargs)
    assert "\n" not in str(info.value)


def test_transient_just_below_steps_is_accepted():
    lam = lyapunov_spectrum(lambda s, x: 0.5 * s, torch.ones(4, dtype=F64), 10, 2, transient=9)
    assert torch.allclose(lam, torch.full((2,), math.log(0.5), dtype=F64), atol=1e-12)


# ------------------------------------------------------------------------------ long-term Jacobian
@pytest.mark.parametrize("qr", ["householder", "cholesky64"])
def test_long_term_jacobian_closed_form_far_beyond_float_range(qr):
    # x -> diag(2, 0.01) x: T_300 = diag(2^300, 0.01^300); the raw product overflows float64's exponent
    # range in its small entry (1e-600), the graded form does not
    a = torch.tensor([2.0, 0.01], dtype=F64)
    out = long_term_jacobian(lambda s, x: s * a, torch.ones(2, dtype=F64), 300, [1, 10, 300], qr=qr)
    want = torch.tensor([[math.log(2), math.log(0.01)]], dtype=F64) * torch.tensor([[1.0], [10.0], [300.0]], dtype=F64)
    assert torch.allclose(out["log_sv"], want, atol=1e-9, rtol=0)
    assert torch.allclose(out["log_kappa"], want[:, 0] - want[:, 1], atol=1e-9, rtol=0)


@pytest.mark.parametrize("qr", ["householder", "cholesky64"])
def test_long_term_jacobian_equals_svd_of_the_explicit_jacobian_product(qr):
    step, x0, _ = _tanh_rnn(5, gain=1.5, seed=30, batch=(2,))
    u = 0.3 * torch.randn(12, 2, 5, generator=_gen(31), dtype=F64)
    # horizons short enough that the explicit product's SVD still resolves σ_min (κ well below 1/eps)
    out = long_term_jacobian(step, x0, u, [1, 3, 5], qr=qr, k=3)
    for i in range(2):        # member by member, the product of jacrev Jacobians along the trajectory
        s, T, want = x0[i], torch.eye(5, dtype=F64), []
        for t in range(5):
            T = torch.func.jacrev(lambda v: step(v, u[t, i]))(s) @ T
            s = step(s, u[t, i])
            if t + 1 in (1, 3, 5):
                want.append(torch.log(torch.linalg.svdvals(T)))
        assert float(out["log_kappa"][-1, i]) < 25.0
        assert torch.allclose(out["log_sv"][:, i], torch.stack(want), atol=1e-6, rtol=0)   # SVD of T: eps·κ
        assert torch.allclose(out["log_kappa_k"][:, i], torch.stack(want)[:, 0] - torch.stack(want)[:, 2], atol=1e-9)


@pytest.mark.parametrize("qr", ["householder", "cholesky64"])
def test_long_term_jacobian_gives_the_full_spectrum_of_the_same_pass(qr):
    # with a transient it returns lyapunov_spectrum(k = D, Q0 = I)'s numbers exactly (the same QRs), and
    # the closed form on a linear map: x -> diag(a) x has exponents log|a| sorted
    step, x0, _ = _tanh_rnn(6, gain=1.8, seed=40, batch=(3,))
    u = 0.3 * torch.randn(40, 3, 6, generator=_gen(41), dtype=F64)
    out = long_term_jacobian(step, x0, u, [1, 10, 40], qr=qr, transient=7)
    want = lyapunov_spectrum(step, x0, u, 6, transient=7, Q0=torch.eye(6, dtype=F64), qr=qr)
    assert torch.equal(out["exponents"], want)
    assert "exponents" not in long_term_jacobian(step, x0, u, [1, 10], qr=qr)
    a = torch.tensor([0.5, -2.0, 1.1], dtype=F64)
    lin = long_term_jacobian(lambda s, x: s * a, torch.ones(3, dtype=F64), 50, [5], qr=qr, transient=10)
    assert torch.allclose(lin["exponents"], torch.log(a.abs()).sort(descending=True).values, atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="transient"):
        long_term_jacobian(step, x0, u, [1, 10], qr=qr, transient=40)


@pytest.mark.parametrize("qr", ["householder", "cholesky64"])
def test_exactly_singular_long_term_jacobian_is_minus_inf_and_infinite_kappa(qr):
    # the second unit is wiped every step: T_t has rank 2 of 3 from t = 1 on
    mask = torch.tensor([1.0, 0.0, 1.0], dtype=F64)
    M3 = torch.tensor([[0.9, 0.2, 0.0], [0.1, 0.8, 0.3], [0.0, 0.4, 1.1]], dtype=F64)
    out = long_term_jacobian(lambda s, x: (s @ M3.T) * mask, torch.ones(3, dtype=F64), 20, [1, 20], qr=qr)
    assert torch.isneginf(out["log_sv"][:, -1]).all() and torch.isfinite(out["log_sv"][:, :2]).all()
    assert torch.isinf(out["log_kappa"]).all()


# ------------------------------------------------------------------------------ long QR intervals, dtype
@pytest.mark.parametrize("form", ["elementwise", "matmul"])
def test_long_qr_intervals_keep_the_closed_form_in_float32(form):
    # 0.1^50 = 1e-50 underflows float32 and 3^100 overflows it: the columns are rescaled between QRs
    for a, every in ((0.1, 50), (3.0, 100), (0.1, 1)):
        M32 = a * torch.eye(4)
        step = (lambda s, x: a * s) if form == "elementwise" else (lambda s, x: s @ M32.T)
        if form == "matmul" and a == 3.0:
            continue                     # its state overflows too: the next test
        lam = lyapunov_spectrum(step, torch.full((4,), 1e-30), 200, 3, qr_every=every, generator=_gen(1))
        assert torch.allclose(lam, torch.full((3,), math.log(a)), atol=1e-5), (a, every, lam)


def test_an_overflowing_state_is_explained_not_silently_nan():
    # forward-mode AD of s @ M.T at an infinite state is inf * 0 = NaN; the element-wise form needs no state
    lam = lyapunov_spectrum(lambda s, x: 3.0 * s, torch.ones(4), 200, 3, qr_every=100, generator=_gen(1))
    assert torch.allclose(lam, torch.full((3,), math.log(3.0)), atol=1e-5)
    M3 = 3.0 * torch.eye(4)
    with pytest.warns(LyapunovAccuracyWarning, match="state overflowed"):
        lam = lyapunov_spectrum(lambda s, x: s @ M3.T, torch.ones(4), 200, 3, qr_every=100, generator=_gen(1))
    assert torch.isnan(lam).all()


def test_spread_spectrum_with_a_long_interval_is_exact_in_float64_and_refused_in_float32():
    a = torch.tensor([2.0, 1.0, 0.5, 0.1], dtype=F64)           # log a spans 3 nats per step
    expected = a.log()
    lam = lyapunov_spectrum(lambda s, x: a * s, torch.ones(4, dtype=F64), 400, 4, qr_every=5, transient=100,
                            jacobian=_diag_jac(a), generator=_gen(2))
    assert torch.allclose(lam, expected, atol=1e-10)            # e^-15 collinearity: fine in float64
    a32 = a.float()
    with pytest.warns(LyapunovAccuracyWarning, match="qr_every=20 is too long"):
        lyapunov_spectrum(lambda s, x: a32 * s, torch.ones(4), 200, 4, qr_every=20, jacobian=_diag_jac(a32),
                          generator=_gen(2))
    with warnings.catch_warnings():                              # every step: no warning, the closed form
        warnings.simplefilter("error", LyapunovAccuracyWarning)
        lam = lyapunov_spectrum(lambda s, x: a32 * s, torch.ones(4), 400, 4, transient=100, jacobian=_diag_jac(a32),
                                generator=_gen(2))
    assert torch.allclose(lam.double(), expected, atol=1e-5)


def test_volume_identity_of_a_strongly_contracting_net_in_float64():
    # g = 4 with input bits: the bottom exponents are strongly negative (float32 drifts there);
    # in float64 the sum of all N exponents is the mean log|det D_t| (measured: 4e-8 of 104.35; float32 is
    # off by 3.0 in the sum and 0.5 in single exponents here)
    cfg = M.ModelConfig(hidden=30, gain=4.0)
    p = {k: v.double() for k, v in M.init_ensemble(cfg, 1, 1, [5]).items()}
    u = M.drive(cfg, p, torch.randint(0, 2, (200, 1, 1, 1), generator=_gen(3)).double())
    step = M.step_fn(cfg, p)
    lam = lyapunov_spectrum(step, p["h0"], u, 30, jacobian=M.jacobian_fn(cfg, p), transient=20, generator=_gen(4))
    vol = volume_growth(step, p["h0"], u, transient=20)
    assert lam[..., -1].item() < -2                              # strongly contracting directions exist
    assert torch.allclose(lam.sum(-1), vol, atol=1e-6, rtol=0)


def test_ordered_sum_gives_each_member_the_same_numbers_in_any_ensemble():
    x = torch.randn(30, 8, 1, 16, generator=_gen(5))
    full = ordered_sum(x.unbind(0))
    for idx in ([1, 2, 3], [5], [0, 1, 2, 3], [2, 3, 4, 5, 6]):
        assert torch.equal(ordered_sum(x[:, idx].unbind(0)), full[idx])
    assert torch.allclose(full, x.sum(0), atol=1e-5)
