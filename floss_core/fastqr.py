"""A fused, exact, differentiable Lyapunov tangent kernel for the vanilla RNN ``x_t = J tanh(x_{t-1}) + u_t``.

The same numbers as ``lyapunov_spectrum`` with the analytic RNN tangent (``models._rnn_jacobian``) and
Householder QR, but with its own forward and a hand-written backward (the style of
``models._RNNSequence``):

* forward QR is CholeskyQR: ``G = AᵀA`` (accumulated in ``gram_dtype``, float64 by default, so an
  ill-conditioned A keeps a positive definite Gram), ``R = chol(G)`` upper with positive diagonal,
  ``Q = A R⁻¹`` by one triangular solve. The QR with positive diag(R) is unique, so ``log R_ii`` equals
  Householder's ``log|R_ii|`` in exact arithmetic; Q differs from LAPACK's only by column signs, which
  no later ``|R_ii|`` sees. A step whose Gram is not positive definite (a rank-deficient A, or one too
  ill-conditioned for ``gram_dtype``) falls back to ``torch.linalg.qr`` for that step.
  Accuracy: one CholeskyQR pass has error ~ cond(A)² · eps(gram_dtype) against Householder's
  cond(A) · eps(input dtype); with a float64 Gram for float32 data that is far below float32's own
  rounding (while cond(A) < ~1e7; beyond, Cholesky fails and Householder takes over). When the Gram is no
  more precise than the data (float64 data, or an explicit float32 Gram) ``refine`` (the default there)
  adds a second pass, CholeskyQR2, which restores Householder-level accuracy (gradcheck needs it).
* backward is the QR adjoint (A = QR, m ≥ n) followed by the adjoint of ``A = J (s ⊙ Q)``,
  ``s = 1 - tanh²(x_{t-1})``, with no autograd graph: a handful of batched matmuls per step.

On CPU, for float32 / float64 data with the float64 Gram and one pass (the flossing window's case), the
per-step loop of forward and backward runs compiled (``csrc/window_qr.cpp``, built by ``native.py`` like
the training loop's; ``FLOSS_NATIVE=0`` or a failed build: the Python loop): the same algorithm calling
BLAS / LAPACK on each network's matrices, with ``Q = A R⁻¹`` solved in the data's dtype; equal to the Python
loop to rounding (tests/test_fastqr.py). A window with a Gram that is not positive definite runs in Python.

Shapes: E networks, b sequences each, N units, k tangent vectors, L steps; every (E, b) pair is an
independent system, flattened to one batch dimension B = E·b inside.

The same QR and adjoint serve any map whose one-step Jacobians are given explicitly:
``layered_tangent_logs`` (a stacked cell, layer by layer, from per-layer Jacobians: the flossing window of
a user's nn.RNN / GRU / LSTM, ``adapters.window``) and ``jacobian_tangent_logs`` (one dense D_t per step).
"""
from __future__ import annotations

import itertools
import warnings

import torch

from .lyapunov import LyapunovAccuracyWarning, _check, ordered_sum


def qr_schedule(steps: int, qr_every: int = 1) -> tuple[int, ...]:
    """The 1-based QR steps ``lyapunov_spectrum`` uses: every ``qr_every``-th step and always the last."""
    if steps < 1 or qr_every < 1:
        raise ValueError(f"steps and qr_every must be >= 1, got {steps} and {qr_every}")
    return tuple(range(qr_every, steps, qr_every)) + (steps,)


def _qr_step(A: torch.Tensor, gram_dtype: torch.dtype, refine: bool = False):
    """One re-orthonormalisation of A (B, N, k): ``(Q (B, N, k), R (B, k, k), fell_back)``, both in
    ``gram_dtype``, R upper triangular with diag(R) >= 0 and A = QR.

    CholeskyQR in ``gram_dtype`` (with ``refine`` a second pass on Q, CholeskyQR2: Householder-level
    accuracy when ``gram_dtype`` is no more precise than A); if any Gram matrix is not positive definite
    (``cholesky_ex`` info), Householder QR (``torch.linalg.qr``) for the whole step, signs fixed so that
    diag(R) >= 0 (a zero R_ii keeps its column's sign). The tensors come in whatever memory layout LAPACK
    returns (column-major): every later op takes strides as they are, so no transposing copy is made."""
    Ag = A if A.dtype == gram_dtype else A.to(gram_dtype)
    R, info = torch.linalg.cholesky_ex(torch.bmm(Ag.mT, Ag), upper=True)
    if not _failed(info):
        Q = torch.linalg.solve_triangular(R, Ag, upper=True, left=False)
        if not refine:
            return Q, R, False
        R2, info = torch.linalg.cholesky_ex(torch.bmm(Q.mT, Q), upper=True)
        if not _failed(info):
            return torch.linalg.solve_triangular(R2, Q, upper=True, left=False), torch.bmm(R2, R), False
    Q, R = torch.linalg.qr(Ag)
    sign = torch.sign(R.diagonal(dim1=-2, dim2=-1))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return Q * sign.unsqueeze(-2), R * sign.unsqueeze(-1), True


def _window_qr(X, gram_dtype, refine: bool, cpu: bool):
    """One window step's QR of X (..., n, k) for the Python window loops: LAPACK's Householder in X's dtype
    (``gram_dtype`` None), else CholeskyQR inline (``_qr_step``'s first pass), handing over to ``_qr_step``
    (CholeskyQR2, or Householder where a Gram is singular) when asked to refine or when a Cholesky fails.
    Returns (Q, R, the number of fallbacks: 0 or 1)."""
    if gram_dtype is None:
        Q, R = torch.linalg.qr(X)
        return Q, R, 0
    Xg = X.to(gram_dtype)
    R, info = torch.linalg.cholesky_ex(torch.bmm(Xg.mT, Xg), upper=True)
    if refine or (bool(info.numpy().any()) if cpu else bool(info.any())):
        return _qr_step(X, gram_dtype, refine)
    return torch.linalg.solve_triangular(R, Xg, upper=True, left=False), R, 0


def _warn_if_collinear(diag: torch.Tensor, dtype: torch.dtype, every: int) -> None:
    """The fused kernel's version of lyapunov_spectrum's check: between two QRs the tangent columns align
    with the top direction; once diag(R)'s smallest entry relative to its largest falls to the rounding
    of the data's dtype, the lower exponents (and their gradients) are lost. Warn, once per call."""
    rel = diag.amin(dim=-1) / diag.amax(dim=-1).clamp_min(torch.finfo(diag.dtype).tiny)
    floor = 1000 * torch.finfo(dtype).eps
    if bool((rel < floor).any()):
        warnings.warn(f"a QR every ~{every} steps is too long for this flossing window in "
                      f"{str(dtype).replace('torch.', '')}: the tangent vectors became collinear to "
                      f"{float(rel.min()):.1e} (rounding level {floor:.0e}), so the lower exponents are not "
                      f"resolved; use a shorter qr_every or fewer exponents k", LyapunovAccuracyWarning,
                      stacklevel=3)


def _failed(info: torch.Tensor) -> bool:
    # a 9-element int tensor: numpy's any() skips two dispatcher round trips per step on CPU
    return bool(info.numpy().any() if info.device.type == "cpu" else info.any())


class _RNNTangentLogs(torch.autograd.Function):
    """log diag(R_t) at the QR steps of ``Q_t = J diag(1 - tanh²(x_{t-1})) Q_{t-1}``, hand-written backward.

    Per-step tensors are kept in lists, not preallocated (L, ...) buffers: on CPU a fresh multi-MB
    buffer costs a page fault per 4 KiB page on every call (about 20% of the forward at the
    benchmark size), while per-step blocks are recycled by the allocator from the previous call."""

    @staticmethod
    def forward(ctx, Xprev, J, Q0, qr_steps, gram_dtype, refine):
        L, E, b, N = Xprev.shape
        k = Q0.shape[-1]
        B, dt = E * b, Xprev.dtype
        T = torch.tanh(Xprev).reshape(L, B, N)
        S = torch.mul(T, T).neg_().add_(1.0).unsqueeze(-1)       # tanh'(x_{t-1}) (L, B, N, 1)
        St = S.unbind(0)
        Jb = J if b == 1 else J.repeat_interleave(b, dim=0)       # (B, N, N): member e's J for each of its b
        is_qr = [False] * (L + 1)
        for t in qr_steps:
            is_qr[t] = True
        Q = Q0.expand(E, b, N, k).reshape(B, N, k)
        ctx.native = _native_window(Xprev, gram_dtype, refine)
        if ctx.native:
            S2 = S.squeeze(-1)
            Qs, Rs, diag, failed = torch.ops.floss_window.window_forward(S2, Jb.contiguous(), Q.contiguous(),
                                                                         list(qr_steps))
            ctx.native = not failed          # else a Gram that is not positive definite: the loop below
        if ctx.native:                       # (Householder for that step) runs the window again
            tiny = torch.finfo(dt).tiny
            if len(qr_steps) < L:
                _warn_if_collinear(diag, dt, L // len(qr_steps))
            logs = torch.log(diag.clamp_min(tiny)).to(dt)
            ctx.save_for_backward(T, S2, Jb.contiguous())
            ctx.Qs, ctx.Rs, ctx.mask = Qs, Rs, diag > tiny
            ctx.shape, ctx.qr_steps, ctx.fallbacks = (L, E, b, N, k), list(qr_steps), 0
            return logs.view(len(qr_steps), E, b, k)
        Qs, Ps, Rs, diag = [Q], [], [], []                        # Q_0..Q_L, P_1..P_L, R and diag R at QR steps
        fallbacks = 0
        for t in range(1, L + 1):
            P = St[t - 1] * Q                                     # P_t = s_t ⊙ Q_{t-1}
            Ps.append(P)
            Q = torch.bmm(Jb, P)                                  # A_t (between QRs, Q_t itself)
            if is_qr[t]:
                Q, R, fell = _qr_step(Q, gram_dtype, refine)
                fallbacks += fell
                diag.append(R.diagonal(dim1=-2, dim2=-1).clone())   # not a view: R itself can go
                Rs.append(R.to(dt))
                Q = Q.to(dt)
            Qs.append(Q)
        tiny = torch.finfo(dt).tiny
        diag = torch.stack(diag)
        if len(qr_steps) < L:                   # QR every few steps: were the columns still resolvable?
            _warn_if_collinear(diag, dt, L // len(qr_steps))
        logs = torch.log(diag.clamp_min(tiny)).to(dt)
        ctx.save_for_backward(T, S, Jb)
        ctx.Qs, ctx.Ps, ctx.Rs, ctx.mask = Qs, Ps, Rs, diag > tiny
        ctx.shape, ctx.is_qr = (L, E, b, N, k), is_qr
        ctx.fallbacks = fallbacks            # steps that took Householder (logs.grad_fn.fallbacks)
        return logs.view(len(qr_steps), E, b, k)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, glogs):
        if ctx.native:
            return _RNNTangentLogs._native_backward(ctx, glogs)
        T, S, Jb = ctx.saved_tensors
        Qs, Ps, Rs = ctx.Qs, ctx.Ps, ctx.Rs
        L, E, b, N, k = ctx.shape
        is_qr = ctx.is_qr
        need_x, need_J = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        B, nq = E * b, len(Rs)
        # R_ii ∂log(max(R_ii, tiny))/∂R_ii: the incoming weight itself, 0 where the clamp was active
        g = (glogs.reshape(nq, B, k) * ctx.mask).unbind(0)
        gJb = torch.zeros_like(Jb) if need_J else None
        gS = T.new_empty((L, B, N)) if need_x else None
        gSt, St = (gS.unbind(0) if need_x else None), S.unbind(0)
        JbT = Jb.mT
        gQ = None                                                 # ∂/∂Q_t; Q_L feeds nothing but logs
        j = nq - 1
        for t in range(L, 0, -1):
            if is_qr[t]:
                Q = Qs[t]
                if gQ is None:                                    # M = R gRᵀ = diag(g): X = Q diag(g)
                    X = Q * g[j].unsqueeze(-2)
                else:                                             # X = gQ + Q copyltu(R gRᵀ - gQᵀ Q)
                    W = torch.bmm(gQ.mT, Q)
                    d = g[j] - W.diagonal(dim1=-2, dim2=-1)
                    W.tril_(-1)
                    C = torch.add(W, W.mT)                        # C = -copyltu(M)
                    C.diagonal(dim1=-2, dim2=-1).sub_(d)
                    X = torch.baddbmm(gQ, Q, C, alpha=-1.0)
                gA = torch.linalg.solve_triangular(Rs[j].mT, X, upper=False, left=False)   # X R⁻ᵀ
                j -= 1
            else:
                gA = gQ
            if need_J:
                gJb.baddbmm_(gA, Ps[t - 1].mT)                    # dJ += gA (s ⊙ Q_{t-1})ᵀ
            if t == 1 and not need_x:
                break
            V = torch.bmm(JbT, gA)                                # Jᵀ gA
            if need_x:
                torch.linalg.vecdot(V, Qs[t - 1], dim=-1, out=gSt[t - 1])   # ∂/∂s_t
            gQ = V.mul_(St[t - 1])                                # ∂/∂Q_{t-1} = s ⊙ Jᵀ gA
        gX = None
        if need_x:                                                # ds/dx = -2 tanh(x) (1 - tanh²(x))
            gX = gS.mul_(T).mul_(S.squeeze(-1)).mul_(-2.0).view(L, E, b, N)
        gJ = None
        if need_J:
            gJ = gJb if b == 1 else ordered_sum(gJb.view(E, b, N, N).unbind(1))
        return gX, gJ, None, None, None, None

    @staticmethod
    def _native_backward(ctx, glogs):
        """The same backward with its loop in C++ (csrc/window_qr.cpp)."""
        T, S, Jb = ctx.saved_tensors
        L, E, b, N, k = ctx.shape
        g = (glogs.reshape(-1, E * b, k) * ctx.mask).contiguous()
        gS, gJb = torch.ops.floss_window.window_backward(S, Jb, ctx.Qs, ctx.Rs, g, ctx.qr_steps)
        gX = gJ = None
        if ctx.needs_input_grad[0]:                               # ds/dx = -2 tanh(x) (1 - tanh²(x))
            gX = gS.mul_(T).mul_(S).mul_(-2.0).view(L, E, b, N)
        if ctx.needs_input_grad[1]:
            gJ = gJb if b == 1 else ordered_sum(gJb.view(E, b, N, N).unbind(1))
        return gX, gJ, None, None, None, None


def _native_window(X: torch.Tensor, gram_dtype: torch.dtype, refine: bool) -> bool:
    """Whether this window runs the compiled loop (native.py, csrc/window_qr.cpp): CPU data in float32 or
    float64, a float64 Gram and one CholeskyQR pass (the flossing window's case); the Python loop else."""
    if X.device.type != "cpu" or X.dtype not in (torch.float32, torch.float64) or gram_dtype != torch.float64 \
            or refine:
        return False
    from . import native
    return native.window_available()


def rnn_tangent_logs(Xprev: torch.Tensor, J: torch.Tensor, Q0: torch.Tensor, qr_steps,
                     *, gram_dtype: torch.dtype = torch.float64, refine: bool | None = None) -> torch.Tensor:
    """log|diag R_t| of the RNN tangent dynamics at the given QR steps, differentiable in Xprev and J.

    Args:
      Xprev: (L, E, b, N) the state before each step t = 1..L (x_0, ..., x_{L-1}).
      J: (E, N, N) recurrent weights; the one-step Jacobian is D_t = J diag(1 - tanh²(x_{t-1})).
      Q0: (E, b, N, k) orthonormal tangent start (b may be 1 to share it); not differentiated.
      qr_steps: strictly increasing 1-based steps at which Q is re-orthonormalised; must contain L.
        Between them Q_t = D_t Q_{t-1}; at them (Q_t, R_t) = QR(D_t Q_{t-1}).
      gram_dtype: dtype the Gram matrix, its Cholesky factor and Q = A R⁻¹ are computed in.
      refine: a second CholeskyQR pass per QR step (twice the QR cost); default: only when
        ``gram_dtype`` is no more precise than Xprev's dtype.
    Returns:
      (len(qr_steps), E, b, k) log|R_ii| (clamped at the dtype's smallest normal number), in the
      dtype of Xprev.
    """
    if Xprev.dim() != 4:
        raise ValueError(f"Xprev must be (L, E, b, N), got shape {tuple(Xprev.shape)}")
    L, E, b, N = Xprev.shape
    if L < 1 or E < 1 or b < 1 or N < 1:
        raise ValueError(f"Xprev must have L, E, b, N >= 1, got shape {tuple(Xprev.shape)}")
    if tuple(J.shape) != (E, N, N):
        raise ValueError(f"J must be (E, N, N) = {(E, N, N)}, got {tuple(J.shape)}")
    if Q0.dim() != 4 or Q0.shape[0] != E or Q0.shape[1] not in (1, b) or Q0.shape[2] != N:
        raise ValueError(f"Q0 must be (E, b, N, k) = ({E}, {b} or 1, {N}, k), got {tuple(Q0.shape)}")
    k = Q0.shape[-1]
    if not 1 <= k <= N:
        raise ValueError(f"k must be in 1..{N}, got {k}")
    if not (Xprev.dtype.is_floating_point and J.dtype == Xprev.dtype and gram_dtype.is_floating_point):
        raise ValueError(f"Xprev and J must share one floating dtype, got {Xprev.dtype} and {J.dtype}")
    steps = tuple(int(t) for t in qr_steps)
    if not steps or steps[-1] != L or steps[0] < 1 or any(a >= c for a, c in itertools.pairwise(steps)):
        raise ValueError(f"qr_steps must be strictly increasing steps in 1..L that include the last step "
                         f"L={L}, got {steps}")
    if refine is None:
        refine = torch.finfo(gram_dtype).eps >= torch.finfo(Xprev.dtype).eps
    return _RNNTangentLogs.apply(Xprev, J, Q0.detach().to(Xprev.dtype), steps, gram_dtype, bool(refine))


def rnn_lyapunov_spectrum(Xprev: torch.Tensor, J: torch.Tensor, Q0: torch.Tensor, *, transient: int = 0,
                          qr_every: int = 1, gram_dtype: torch.dtype = torch.float64,
                          refine: bool | None = None) -> torch.Tensor:
    """The first k exponents (E, b, k), sorted descending, exactly as ``lyapunov_spectrum`` counts them
    (QR every ``qr_every`` steps and at the last; rows after the transient rounded up to a QR boundary,
    averaged over the steps they cover), from ``rnn_tangent_logs``."""
    L, N, k = Xprev.shape[0], Xprev.shape[-1], Q0.shape[-1]
    _check(k, N, L, transient, qr_every)
    steps = qr_schedule(L, qr_every)
    rows, counted, last = [], 0, 0
    for j, t in enumerate(steps):
        if last >= transient:
            rows.append(j)
            counted += t - last
        last = t
    logs = rnn_tangent_logs(Xprev, J, Q0, steps, gram_dtype=gram_dtype, refine=refine)
    total = ordered_sum(logs[rows[0]:].unbind(0))      # counted rows are a suffix
    return torch.sort(total / counted, dim=-1, descending=True).values


# ------------------------------------------------------------------ any map with explicit Jacobians
class _LayeredTangentLogs(torch.autograd.Function):
    """log diag(R_t) of ``Q_t = QR(D_t Q_{t-1})`` (a QR every step) for ONE layer with explicit Jacobians
    ``D_t = As[0][t]`` (an nn.RNN / GRU layer, or ``jacobian_tangent_logs``), as ONE autograd node; more
    layers and LSTM layers: ``_StackedTangentLogs``. The forward is ``_RNNTangentLogs``'s with ``A_t Q``;
    the backward its QR adjoint followed by the adjoint of the product (``∂A = ∂X Q_{t-1}ᵀ``,
    ``∂Q_{t-1} = Aᵀ ∂X``), no autograd graph per step."""

    @staticmethod
    def forward(ctx, Q0, gram_dtype, refine, A):
        T, Bn = A.shape[:2]
        dt = A.dtype
        Q = Q0.expand(Bn, *Q0.shape[-2:])
        At = A.unbind(0)
        Qs, Rs, fallbacks = [Q], [], 0
        bmm = torch.bmm
        cpu = Q.device.type == "cpu"
        # the loop is written flat (one helper call per step): at hidden 64 the interpreter's time per step is
        # of the order of the arithmetic's (bench/RESULTS.md, "Flossing a user's module")
        for t in range(T):
            X = bmm(At[t], Q)
            Q, R, fell = _window_qr(X, gram_dtype, refine, cpu)
            fallbacks += fell
            Q = Q.to(dt)
            Rs.append(R)
            Qs.append(Q)
        tiny = torch.finfo(dt).tiny
        Rs = torch.stack(Rs)                                      # conversions and diagonals once, batched
        diag = Rs.diagonal(dim1=-2, dim2=-1).abs()                # abs: Householder's signs
        ctx.save_for_backward(A)
        ctx.Qs, ctx.Rs, ctx.mask, ctx.fallbacks = Qs, Rs.to(dt).unbind(0), diag > tiny, fallbacks
        return torch.log(diag.clamp_min(tiny)).to(dt)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, glogs):
        # the QR adjoint holds for any signs of diag R: ∂log|R_ii| = ∂R_ii / R_ii, so R gRᵀ has diagonal g
        A, = ctx.saved_tensors
        Qs, Rs = ctx.Qs, ctx.Rs
        g = (glogs * ctx.mask).unbind(0)
        gA = torch.empty_like(A, memory_format=torch.contiguous_format)
        gAt, At = gA.unbind(0), A.unbind(0)
        gQ = None
        bmm, solve = torch.bmm, torch.linalg.solve_triangular
        for t in range(len(Rs) - 1, -1, -1):
            Q = Qs[t + 1]
            if gQ is None:
                X = Q * g[t].unsqueeze(-2)
            else:                                                 # X = gQ + Q copyltu(R gRᵀ - gQᵀ Q)
                W = bmm(gQ.mT, Q)
                d = g[t] - W.diagonal(dim1=-2, dim2=-1)
                W.tril_(-1)
                C = torch.add(W, W.mT)
                C.diagonal(dim1=-2, dim2=-1).sub_(d)
                X = torch.baddbmm(gQ, Q, C, alpha=-1.0)
            gX = solve(Rs[t].mT, X, upper=False, left=False)     # X R⁻ᵀ
            bmm(gX, Qs[t].mT, out=gAt[t])                         # ∂A = ∂X Q_{t-1}ᵀ
            if t:
                gQ = bmm(At[t].mT, gX)                            # ∂Q_{t-1} = Aᵀ ∂X
        return None, None, None, gA


class _StackedTangentLogs(torch.autograd.Function):
    """log diag(R_t) of ``Q_t = QR(D_t Q_{t-1})`` (a QR every step) for a layered map with explicit
    per-layer Jacobians (stacked layers, LSTM layers), as ONE autograd node.

    The state is layer-major, blocks of n_l rows; the one-step tangent is block lower-triangular: layer
    l's block is ``X_l = A_l Q_l + B_l X_{l-1}[:H]`` (A_l its own Jacobian (n_l, n_l), B_l (n_l, H) the one
    through its input, the first H rows of the block below's new tangent: a stacked RNN / GRU / LSTM,
    driven by the new h of the layer below), so D_t is never formed; an LSTM layer's A_l covers its h
    columns only, its c columns are two diagonals (``layered_tangent_logs``). The backward is the QR
    adjoint followed by the adjoints of the products (``∂Q_l = A_lᵀ ∂X_l``, ``∂X_{l-1}[:H] += B_lᵀ ∂X_l``).
    Per step only what the recursion needs: X_t, Q_t and ∂X_t live in three (T, B, D, k) buffers (per-layer
    views made once per call, ``out=`` and in-place products, no split or cat per step); the gradients
    w.r.t. the Jacobians, which the recursion never reads (``∂A_l = ∂X_l Q_lᵀ``, ``∂B_l = ∂X_l X_{l-1}[:H]ᵀ``,
    the diagonals' ``Σ_k ∂X ⊙ Q_c``), are ONE batched product each over all steps after the loop."""

    @staticmethod
    def forward(ctx, Q0, gram_dtype, refine, feed, cells, *mats):
        L = (len(mats) + 1) // 3 if cells else (len(mats) + 1) // 2
        As, Bs, Cs = mats[:L], (None,) + mats[L:2 * L - 1], mats[2 * L - 1:]
        T, Bn = As[0].shape[:2]
        sizes = [a.shape[-2] for a in As]
        offs = list(itertools.accumulate([0] + sizes))
        k, dt = Q0.shape[-1], As[0].dtype
        Xb = As[0].new_empty((T, Bn, offs[-1], k))               # X_t = D_t Q_{t-1}, before its QR
        Qb = As[0].new_empty((T + 1, Bn, offs[-1], k))           # Q_0 .. Q_T
        Qb[0].copy_(Q0.expand(Bn, *Q0.shape[-2:]))
        At = [a.unbind(0) for a in As]
        Bt = [None] + [b.unbind(0) for b in Bs[1:]]
        Ct = [c.unsqueeze(-1).unbind(0) for c in Cs]              # (B, 2, H, 1) per step
        # per layer and step: its rows of X_t, of X_t as (B, 2, H, k) (LSTM), its source rows of Q_{t-1}
        # (h only for an LSTM: the c rows, (B, 1, H, k), are scaled by the diagonals) and its input's rows
        Xv = [Xb[:, :, o:o + n].unbind(0) for o, n in zip(offs, sizes)]
        Qv = [Qb[:T, :, o:o + (feed if cells else n)].unbind(0) for o, n in zip(offs, sizes)]
        if cells:
            X4 = [Xb[:, :, o:o + n].unflatten(-2, (2, feed)).unbind(0) for o, n in zip(offs, sizes)]
            Qc = [Qb[:T, :, None, o + feed:o + n].unbind(0) for o, n in zip(offs, sizes)]
        Fv = [None] + [Xb[:, :, o:o + feed].unbind(0) for o in offs[:L - 1]]
        Qt, Xt = Qb.unbind(0), Xb.unbind(0)
        Rs, fallbacks = [], 0
        bmm = torch.bmm
        cpu = Xb.device.type == "cpu"
        for t in range(T):
            for l in range(L):
                X = Xv[l][t]
                bmm(At[l][t], Qv[l][t], out=X)
                if cells:                                         # h columns dense, c columns diagonal
                    X4[l][t].addcmul_(Ct[l][t], Qc[l][t])
                if l:
                    X.baddbmm_(Bt[l][t], Fv[l][t])
            A = Xt[t]
            Q, R, fell = _window_qr(A, gram_dtype, refine, cpu)
            fallbacks += fell
            Qt[t + 1].copy_(Q)
            Rs.append(R)
        tiny = torch.finfo(dt).tiny
        Rs = torch.stack(Rs)                                      # conversions and diagonals once, batched
        diag = Rs.diagonal(dim1=-2, dim2=-1).abs()                # abs: Householder's signs
        ctx.save_for_backward(*mats)
        ctx.Xb, ctx.Qb, ctx.Rs, ctx.mask, ctx.fallbacks = Xb, Qb, Rs.to(dt).unbind(0), diag > tiny, fallbacks
        ctx.L, ctx.sizes, ctx.feed, ctx.cells = L, sizes, feed, cells
        return torch.log(diag.clamp_min(tiny)).to(dt)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, glogs):
        mats = ctx.saved_tensors
        L, sizes, feed, cells = ctx.L, ctx.sizes, ctx.feed, ctx.cells
        As, Bs = mats[:L], (None,) + mats[L:2 * L - 1]
        Xb, Qb, Rs = ctx.Xb, ctx.Qb, ctx.Rs
        T, Bn, D, k = Xb.shape
        offs = list(itertools.accumulate([0] + sizes))
        g = (glogs * ctx.mask).unbind(0)
        gXb = torch.empty_like(Xb)                                # ∂X_t, the feeds from above added in
        gQ = Xb.new_empty((Bn, D, k))                             # ∂Q_{t-1}, rewritten every step
        At = [a.mT.unbind(0) for a in As]                         # A_lᵀ, B_lᵀ
        Bt = [None] + [b.mT.unbind(0) for b in Bs[1:]]
        Ct = [c.unsqueeze(-1).unbind(0) for c in mats[2 * L - 1:]]
        gXv = [gXb[:, :, o:o + n].unbind(0) for o, n in zip(offs, sizes)]
        gFv = [None] + [gXb[:, :, o:o + feed].unbind(0) for o in offs[:L - 1]]
        if cells:
            g4 = [gXb[:, :, o:o + n].unflatten(-2, (2, feed)).unbind(0) for o, n in zip(offs, sizes)]
            gQh = [gQ[:, o:o + feed] for o in offs[:L]]
            gQc = [gQ[:, o + feed:o + n] for o, n in zip(offs, sizes)]
        else:
            gQh = [gQ[:, o:o + n] for o, n in zip(offs, sizes)]
        Qt, gXt = Qb.unbind(0), gXb.unbind(0)
        bmm, solve, vecdot = torch.bmm, torch.linalg.solve_triangular, torch.linalg.vecdot
        first = True                                              # Q_T feeds nothing but its logs
        for t in range(T - 1, -1, -1):
            Q = Qt[t + 1]
            if first:
                X = Q * g[t].unsqueeze(-2)
                first = False
            else:                                                 # X = gQ + Q copyltu(R gRᵀ - gQᵀ Q)
                W = bmm(gQ.mT, Q)
                d = g[t] - W.diagonal(dim1=-2, dim2=-1)
                W.tril_(-1)
                C = torch.add(W, W.mT)
                C.diagonal(dim1=-2, dim2=-1).sub_(d)
                X = torch.baddbmm(gQ, Q, C, alpha=-1.0)
            solve(Rs[t].mT, X, upper=False, left=False, out=gXt[t])   # ∂X = X R⁻ᵀ
            for l in range(L - 1, -1, -1):                        # layer l's ∂X is complete once l+1 fed it
                gl = gXv[l][t]
                if l:                                             # the input's tangent feeds layer l
                    gFv[l][t].baddbmm_(Bt[l][t], gl)
                if t:
                    bmm(At[l][t], gl, out=gQh[l])                 # ∂Q_l = A_lᵀ ∂X_l
                    if cells:                                     # the diagonal c columns
                        vecdot(Ct[l][t], g4[l][t], dim=-3, out=gQc[l])
        gmats = []
        for l, (o, n) in enumerate(zip(offs, sizes)):             # ∂A_l = ∂X_l Q_lᵀ, all steps at once
            gl = gXb[:, :, o:o + n].flatten(0, 1)
            gmats.append(bmm(gl, Qb[:T, :, o:o + (feed if cells else n)].flatten(0, 1).mT).view(As[l].shape))
        for l in range(1, L):                                     # ∂B_l = ∂X_l X_{l-1}[:H]ᵀ
            gl = gXb[:, :, offs[l]:offs[l + 1]].flatten(0, 1)
            gmats.append(bmm(gl, Xb[:, :, offs[l - 1]:offs[l - 1] + feed].flatten(0, 1).mT).view(Bs[l].shape))
        if cells:                                                 # the diagonals: Σ_k ∂X ⊙ Q_c
            for o, n in zip(offs, sizes):
                gmats.append(vecdot(gXb[:, :, o:o + n].unflatten(-2, (2, feed)), Qb[:T, :, None, o + feed:o + n],
                                    dim=-1))
        return (None, None, None, None, None, *gmats)


def layered_tangent_logs(As, Bs, Q0: torch.Tensor, *, feed: int, cells=None,
                         gram_dtype: torch.dtype = torch.float64, refine: bool | None = None) -> torch.Tensor:
    """log|diag R_t| (T, B, k) of ``(Q_t, R_t) = QR(D_t Q_{t-1})``, t = 1..T, a QR every step, for a
    layered map given by its per-layer Jacobians (``_StackedTangentLogs``; one plain layer
    ``_LayeredTangentLogs``), differentiable in them.

    Args:
      As: L tensors (T, B, n_l, n_l), layer l's Jacobian w.r.t. its own block of the (layer-major) state.
      Bs: L - 1 tensors (T, B, n_l, feed), layer l >= 1's Jacobian w.r.t. its input: the first ``feed``
        rows of the new tangent of layer l - 1.
      cells: for LSTM layers (blocks [h; c] of 2·feed rows): L tensors (T, B, 2, feed); then As[l] is
        (T, B, 2·feed, feed), the Jacobian w.r.t. the block's h rows only, and the one w.r.t. its c rows
        is diagonal, ``[diag(cells[l][..., 0, :]); diag(cells[l][..., 1, :])]`` (h' and c' depend on c
        element-wise): half the products of a dense A_l.
      Q0: (D, k) or (B, D, k) orthonormal start in the layer-major order, D = Σ n_l; not differentiated.
      gram_dtype, refine: as for ``rnn_tangent_logs`` (CholeskyQR with a float64 Gram; Householder for
        a step whose Gram is not positive definite); ``gram_dtype=None``: LAPACK's Householder QR in the
        Jacobians' dtype every step.
    """
    As, Bs, Cs = list(As), list(Bs), [] if cells is None else list(cells)
    if not As or len(Bs) != len(As) - 1 or (cells is not None and len(Cs) != len(As)):
        raise ValueError(f"need L >= 1 layer Jacobians, L - 1 input Jacobians (and L cell diagonals), got "
                         f"{len(As)}, {len(Bs)} (and {len(Cs)})")
    d, k = sum(a.shape[-2] for a in As), Q0.shape[-1]
    if Q0.shape[-2] != d or not 1 <= k <= d:
        raise ValueError(f"Q0 must be (D, k) or (B, D, k) with D = {d}, 1 <= k <= D, got {tuple(Q0.shape)}")
    dt = As[0].dtype
    if refine is None:
        refine = gram_dtype is not None and torch.finfo(gram_dtype).eps >= torch.finfo(dt).eps
    if len(As) == 1 and cells is None:
        return _LayeredTangentLogs.apply(Q0.detach().to(dt), gram_dtype, bool(refine), As[0])
    return _StackedTangentLogs.apply(Q0.detach().to(dt), gram_dtype, bool(refine), int(feed), cells is not None,
                                     *As, *Bs, *Cs)


def jacobian_tangent_logs(Js: torch.Tensor, Q0: torch.Tensor, *, gram_dtype: torch.dtype = torch.float64,
                          refine: bool | None = None) -> torch.Tensor:
    """log|diag R_t| (T, B, k) of ``(Q_t, R_t) = QR(D_t Q_{t-1})`` for explicit one-step Jacobians
    Js (T, B, N, N) (``layered_tangent_logs`` with one layer)."""
    if Js.dim() != 4 or Js.shape[-1] != Js.shape[-2] or Js.shape[0] < 1:
        raise ValueError(f"Js must be (T, B, N, N) with T >= 1, got shape {tuple(Js.shape)}")
    return layered_tangent_logs([Js], [], Q0, feed=0, gram_dtype=gram_dtype, refine=refine)
