"""Tests for floss_core.fastqr: the fused RNN tangent kernel (CholeskyQR forward, hand-written backward)
against plain autograd through torch.linalg.qr, closed forms, the Householder fallback and errors.

Tiny sizes throughout (E=2, b=2, N=6, k=4, L=7) so the file runs in about a second.
"""
import math

import pytest
import torch

from floss_core.fastqr import (
    _qr_step,
    qr_schedule,
    rnn_lyapunov_spectrum,
    rnn_tangent_logs,
)
from floss_core.lyapunov import lyapunov_spectrum

F32, F64 = torch.float32, torch.float64
E, B, N, K, L = 2, 2, 6, 4, 7
SCHEDULES = [tuple(range(1, L + 1)), (2, 4, 6, 7)]


def _inputs(dtype=F64, *, e=E, b=B, n=N, k=K, steps=L, seed=0, gain=1.5):
    g = torch.Generator().manual_seed(seed)
    X = 1.5 * torch.randn(steps, e, b, n, generator=g, dtype=F64)
    J = gain * torch.randn(e, n, n, generator=g, dtype=F64) / math.sqrt(n)
    Q0 = torch.linalg.qr(torch.randn(e, b, n, k, generator=g, dtype=F64))[0]
    return X.to(dtype), J.to(dtype), Q0.to(dtype)


def _reference(X, J, Q0, qr_steps):
    """Plain torch ops under autograd: Q <- J (s ⊙ Q), Householder QR at the QR steps, log|diag R|."""
    Q, out = Q0, []
    for t in range(1, X.shape[0] + 1):
        s = 1 - torch.tanh(X[t - 1]) ** 2
        Q = J[:, None] @ (s[..., None] * Q)
        if t in qr_steps:
            Q, R = torch.linalg.qr(Q)
            d = R.diagonal(dim1=-2, dim2=-1).abs()
            out.append(torch.log(d.clamp_min(torch.finfo(d.dtype).tiny)))
    return torch.stack(out)


# ------------------------------------------------------------------------------ forward
@pytest.mark.parametrize("qr_steps", SCHEDULES)
@pytest.mark.parametrize("dtype,tol", [(F32, 1e-5), (F64, 1e-10)])
def test_logs_match_householder_reference(qr_steps, dtype, tol):
    X, J, Q0 = _inputs(dtype)
    logs = rnn_tangent_logs(X, J, Q0, qr_steps)
    assert logs.shape == (len(qr_steps), E, B, K) and logs.dtype == dtype
    assert torch.allclose(logs, _reference(X, J, Q0, qr_steps), atol=tol, rtol=0)


def test_gram_in_input_dtype_and_shared_start():
    X, J, Q0 = _inputs(F64)
    ref = _reference(X, J, Q0[:, :1], SCHEDULES[1])                       # one start per member, b=2
    got = rnn_tangent_logs(X, J, Q0[:, :1], SCHEDULES[1], gram_dtype=F64)
    assert torch.allclose(got, ref, atol=1e-10, rtol=0)
    X32, J32, Q32 = _inputs(F32)
    got32 = rnn_tangent_logs(X32, J32, Q32, SCHEDULES[0], gram_dtype=F32)
    assert torch.allclose(got32, _reference(X32, J32, Q32, SCHEDULES[0]), atol=1e-4, rtol=0)


def test_members_are_independent():
    X, J, Q0 = _inputs(F64)
    full = rnn_tangent_logs(X, J, Q0, SCHEDULES[1])
    for i in range(E):
        one = rnn_tangent_logs(X[:, i:i + 1], J[i:i + 1], Q0[i:i + 1], SCHEDULES[1])
        assert torch.allclose(full[:, i:i + 1], one, atol=1e-12, rtol=0)


@pytest.mark.parametrize("qr_steps", SCHEDULES)
def test_diagonal_closed_form(qr_steps):
    # x = 0 (s = 1), J = diag(a), Q0 = I: Q stays diagonal up to signs, so each QR row is
    # (steps since the last QR) · log|a_i| in the order of Q0's columns
    a = torch.tensor([[1.3, -0.4, 0.9, 2.1, -0.15, 0.6], [0.5, -1.7, 0.2, 1.1, -0.8, 3.0]], dtype=F64)
    J = torch.diag_embed(a)
    Q0 = torch.eye(N, dtype=F64).expand(E, 1, N, N)
    logs = rnn_tangent_logs(torch.zeros(L, E, 1, N, dtype=F64), J, Q0, qr_steps)
    gaps = torch.tensor([t - s for t, s in zip(qr_steps, (0,) + qr_steps[:-1])], dtype=F64)
    expected = gaps[:, None, None, None] * a.abs().log()[None, :, None, :]
    assert torch.allclose(logs, expected, atol=1e-12, rtol=0)


# ------------------------------------------------------------------------------ gradients
@pytest.mark.parametrize("qr_steps", SCHEDULES)
def test_gradients_match_autograd_reference(qr_steps):
    X, J, Q0 = _inputs(F64, seed=1)
    w = torch.randn(len(qr_steps), E, B, K, generator=torch.Generator().manual_seed(2), dtype=F64)
    grads = []
    for fn in (rnn_tangent_logs, _reference):
        x, j = X.clone().requires_grad_(True), J.clone().requires_grad_(True)
        grads.append(torch.autograd.grad((fn(x, j, Q0, qr_steps) * w).sum(), (x, j)))
    for got, ref in zip(*grads):
        assert torch.allclose(got, ref, atol=1e-10, rtol=1e-9)


def test_gradient_of_one_input_only():
    X, J, Q0 = _inputs(F64, seed=3)
    x, j = X.clone().requires_grad_(True), J.clone().requires_grad_(True)
    gx_ref, gj_ref = torch.autograd.grad(_reference(x, j, Q0, SCHEDULES[1]).sum(), (x, j))
    gj, = torch.autograd.grad(rnn_tangent_logs(X, j, Q0, SCHEDULES[1]).sum(), (j,))
    gx, = torch.autograd.grad(rnn_tangent_logs(x, J, Q0, SCHEDULES[1]).sum(), (x,))
    assert torch.allclose(gj, gj_ref, atol=1e-10) and torch.allclose(gx, gx_ref, atol=1e-10)


@pytest.mark.parametrize("qr_steps", [(1, 2, 3), (2, 3), (3,)])
def test_gradcheck(qr_steps):
    X, J, Q0 = _inputs(F64, e=1, b=2, n=4, k=3, steps=3, seed=4)
    X.requires_grad_(True)
    J.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, j: rnn_tangent_logs(x, j, Q0, qr_steps), (X, J))


# ------------------------------------------------------------------------------ fallback
def test_qr_step_falls_back_on_singular_gram():
    g = torch.Generator().manual_seed(5)
    A = torch.randn(3, N, K, generator=g, dtype=F64)
    A[1, :, 2] = A[1, :, 0]                                  # rank-deficient: G not positive definite
    A[2, :, 1] = 0.0
    Q, R, fell = _qr_step(A, F64)
    assert fell
    assert torch.allclose(Q @ R, A, atol=1e-12)
    assert torch.allclose(Q.mT @ Q, torch.eye(K, dtype=F64).expand(3, K, K), atol=1e-12)
    assert (R.diagonal(dim1=-2, dim2=-1) >= 0).all() and torch.equal(R, R.triu())
    ref = torch.linalg.qr(A)[1].diagonal(dim1=-2, dim2=-1).abs()
    assert torch.allclose(R.diagonal(dim1=-2, dim2=-1), ref, atol=1e-12)
    Q2, R2, fell2 = _qr_step(A[:1], F64)                     # a well-conditioned A stays on CholeskyQR
    assert not fell2 and torch.allclose(Q2 @ R2, A[:1], atol=1e-12)


@pytest.mark.parametrize("gram_dtype", [F32, F64])
def test_fallback_inside_the_kernel(gram_dtype):
    # unit 0 saturates at step 3 (tanh(50) == 1: s = 0 exactly), so with J diagonal and Q0 = I the
    # first column of A_3 is exactly zero: Cholesky fails, Householder takes that step
    a = torch.tensor([1.3, -0.4, 0.9, 2.1, -0.15, 0.6])
    X = torch.zeros(L, 1, 1, N)
    X[2, ..., 0] = 50.0
    J, Q0 = torch.diag(a)[None], torch.eye(N).expand(1, 1, N, N)
    logs = rnn_tangent_logs(X, J.requires_grad_(True), Q0, SCHEDULES[0], gram_dtype=gram_dtype)
    assert logs.grad_fn.fallbacks == 1                       # step 3 only
    ref = _reference(X, J, Q0, SCHEDULES[0])
    assert torch.isfinite(logs).all()
    assert torch.allclose(logs, ref, atol=1e-5, rtol=0)
    assert logs[2, 0, 0, 0] == math.log(torch.finfo(F32).tiny)


# ------------------------------------------------------------------------------ spectrum, errors
@pytest.mark.parametrize("qr_every,transient", [(1, 3), (2, 3), (3, 0)])
def test_spectrum_matches_lyapunov_spectrum(qr_every, transient):
    X, J, Q0 = _inputs(F64, steps=9, seed=6)
    states = torch.cat([X[1:], torch.tanh(X[-1:]) @ J.mT[:, None]])   # any trajectory with x_{t-1} = X[t-1]
    step = lambda s, u: torch.tanh(s) @ J.mT[:, None]
    jac = lambda s, u, new, Q: J[:, None] @ ((1 - torch.tanh(s) ** 2)[..., None] * Q)
    ref = lyapunov_spectrum(step, X[0], 9, K, jacobian=jac, transient=transient, qr_every=qr_every,
                            Q0=Q0, trajectory=states)
    got = rnn_lyapunov_spectrum(X, J, Q0, transient=transient, qr_every=qr_every)
    assert torch.allclose(got, ref, atol=1e-10, rtol=0)


def test_qr_schedule():
    assert qr_schedule(7, 1) == (1, 2, 3, 4, 5, 6, 7)
    assert qr_schedule(7, 2) == (2, 4, 6, 7)
    assert qr_schedule(6, 3) == (3, 6)
    assert qr_schedule(2, 5) == (2,)


def test_single_step_and_k_equals_one():
    X, J, Q0 = _inputs(F64, steps=1, k=1)
    assert torch.allclose(rnn_tangent_logs(X, J, Q0, (1,)), _reference(X, J, Q0, (1,)), atol=1e-12)


@pytest.mark.parametrize("qr_steps,match", [((2, 4, 6), "include the last step"), ((4, 2, 7), "increasing"),
                                            ((0, 7), "1..L"), ((), "include the last step")])
def test_bad_qr_steps(qr_steps, match):
    X, J, Q0 = _inputs(F64)
    with pytest.raises(ValueError, match=match):
        rnn_tangent_logs(X, J, Q0, qr_steps)


def test_bad_shapes():
    X, J, Q0 = _inputs(F64)
    with pytest.raises(ValueError, match="k must be"):
        rnn_tangent_logs(X, J, torch.zeros(E, B, N, N + 1, dtype=F64), (L,))
    with pytest.raises(ValueError, match="J must be"):
        rnn_tangent_logs(X, J[:1], Q0, (L,))
    with pytest.raises(ValueError, match="Xprev must be"):
        rnn_tangent_logs(X[0], J, Q0, (L,))


def test_a_too_long_qr_interval_in_the_window_kernel_warns():
    import warnings

    from floss_core.lyapunov import LyapunovAccuracyWarning
    g = torch.Generator().manual_seed(0)
    n, k = 40, 40
    J = (2.0 * torch.randn(n, n, generator=g) / n ** 0.5)[None]
    X = torch.randn(60, 1, 1, n, generator=g)
    Q0 = torch.linalg.qr(torch.randn(n, k, generator=g))[0][None, None]
    with pytest.warns(LyapunovAccuracyWarning, match="too long for this flossing window"):
        rnn_lyapunov_spectrum(X, J, Q0, qr_every=20)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LyapunovAccuracyWarning)
        rnn_lyapunov_spectrum(X, J, Q0, qr_every=1)
        rnn_lyapunov_spectrum(X, J, Q0[..., :2], qr_every=5)        # the top two stay resolvable


# ------------------------------------------------------------------------------ the compiled window loop
# csrc/window_qr.cpp (native.py): float32 / float64 CPU data, float64 Gram, one CholeskyQR pass. Each test
# runs the same window through it and through the Python loop (FLOSS_NATIVE=0).
needs_window = pytest.mark.skipif(not __import__("floss_core.native").native.window_available(),
                                  reason="the compiled flossing window is not available here")


def _logs_and_grads(monkeypatch, native, X, J, Q0, qr_steps, w, **kw):
    monkeypatch.setenv("FLOSS_NATIVE", "1" if native else "0")
    x, j = X.clone().requires_grad_(True), J.clone().requires_grad_(True)
    logs = rnn_tangent_logs(x, j, Q0, qr_steps, **kw)
    assert logs.grad_fn.native == native
    return (logs.detach(), *torch.autograd.grad((logs * w).sum(), (x, j)))


@needs_window
@pytest.mark.parametrize("qr_steps", SCHEDULES)
@pytest.mark.parametrize("dtype,shared", [(F32, False), (F32, True), (F64, False)])
def test_compiled_window_equals_the_python_loop(monkeypatch, qr_steps, dtype, shared):
    X, J, Q0 = _inputs(dtype, seed=7)
    Q0 = Q0[:, :1] if shared else Q0
    w = torch.randn(len(qr_steps), E, B, K, generator=torch.Generator().manual_seed(8), dtype=dtype)
    kw = {} if dtype == F32 else {"refine": False}     # float64 data: one pass, the compiled loop's case
    fast = _logs_and_grads(monkeypatch, True, X, J, Q0, qr_steps, w, **kw)
    slow = _logs_and_grads(monkeypatch, False, X, J, Q0, qr_steps, w, **kw)
    tol = 2e-4 if dtype == F32 else 1e-10   # relative: the same operations, summed in another order (QR every
                                            # 2 steps: one CholeskyQR pass loses cond(A)² · eps)
    for a, b in zip(fast, slow):
        assert float((a - b).abs().max() / b.abs().max()) < tol


@needs_window
@pytest.mark.parametrize("k", [16, 19])
def test_compiled_window_with_a_blocked_gram_equals_the_python_loop(monkeypatch, k):
    # from k = 16 on the compiled loop builds the Gram's upper triangle from two column blocks
    X, J, Q0 = _inputs(F64, n=20, k=k, seed=11)
    w = torch.randn(L, E, B, k, generator=torch.Generator().manual_seed(12), dtype=F64)
    fast = _logs_and_grads(monkeypatch, True, X, J, Q0, SCHEDULES[0], w, refine=False)
    slow = _logs_and_grads(monkeypatch, False, X, J, Q0, SCHEDULES[0], w, refine=False)
    for a, b in zip(fast, slow):                 # one CholeskyQR pass each: cond(A)² · eps apart
        assert float((a - b).abs().max() / b.abs().max()) < 1e-9


@needs_window
@pytest.mark.parametrize("qr_steps", SCHEDULES)
def test_compiled_window_matches_autograd_through_householder(monkeypatch, qr_steps):
    X, J, Q0 = _inputs(F64, seed=9)
    w = torch.randn(len(qr_steps), E, B, K, generator=torch.Generator().manual_seed(10), dtype=F64)
    logs, gx, gj = _logs_and_grads(monkeypatch, True, X, J, Q0, qr_steps, w, refine=False)
    x, j = X.clone().requires_grad_(True), J.clone().requires_grad_(True)
    ref = _reference(x, j, Q0, qr_steps)
    rx, rj = torch.autograd.grad((ref * w).sum(), (x, j))
    assert torch.allclose(logs, ref.detach(), atol=1e-10, rtol=0)
    assert torch.allclose(gx, rx, atol=1e-9, rtol=1e-8) and torch.allclose(gj, rj, atol=1e-9, rtol=1e-8)


@needs_window
def test_compiled_window_gradcheck(monkeypatch):
    monkeypatch.setenv("FLOSS_NATIVE", "1")
    X, J, Q0 = _inputs(F64, e=1, b=2, n=4, k=3, steps=3, seed=4)
    X.requires_grad_(True)
    J.requires_grad_(True)
    f = lambda x, j: rnn_tangent_logs(x, j, Q0, (1, 2, 3), refine=False)
    assert f(X, J).grad_fn.native
    assert torch.autograd.gradcheck(f, (X, J))


@needs_window
def test_compiled_window_hands_a_singular_gram_to_the_python_loop(monkeypatch):
    # test_fallback_inside_the_kernel's window: Cholesky fails at step 3, the whole window runs in Python
    monkeypatch.setenv("FLOSS_NATIVE", "1")
    a = torch.tensor([1.3, -0.4, 0.9, 2.1, -0.15, 0.6])
    X = torch.zeros(L, 1, 1, N)
    X[2, ..., 0] = 50.0
    J, Q0 = torch.diag(a)[None].requires_grad_(True), torch.eye(N).expand(1, 1, N, N)
    logs = rnn_tangent_logs(X, J, Q0, SCHEDULES[0])
    assert not logs.grad_fn.native and logs.grad_fn.fallbacks == 1
    assert torch.allclose(logs, _reference(X, J, Q0, SCHEDULES[0]), atol=1e-5, rtol=0)


def test_the_python_loop_runs_where_the_compiled_window_does_not(monkeypatch):
    X, J, Q0 = _inputs(F32)
    J.requires_grad_(True)
    monkeypatch.setenv("FLOSS_NATIVE", "0")
    assert not rnn_tangent_logs(X, J, Q0, SCHEDULES[0]).grad_fn.native
    monkeypatch.setenv("FLOSS_NATIVE", "1")
    assert not rnn_tangent_logs(X, J, Q0, SCHEDULES[0], gram_dtype=F32).grad_fn.native   # not its case
    assert not rnn_tangent_logs(X.double(), J.double(), Q0.double(), SCHEDULES[0]).grad_fn.native  # refine
