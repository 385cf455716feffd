"""Lyapunov spectra and long-term-Jacobian diagnostics of any one-step map.

Pure, differentiable functions over a step map ``step(state, x) -> state`` with states of shape
(..., D) (any leading batch dimensions, e.g. an ensemble E and a batch B). They never import a model.

Method (Benettin et al. 1980; as used for gradient flossing by Engelken, NeurIPS 2023): evolve k
orthonormal tangent vectors with the one-step Jacobian, ``Q <- D_t Q``, re-orthonormalise by a QR
decomposition every ``qr_every`` steps, and average ``log|R_ii|`` over the time after a transient.
Everything, every QR included, is differentiable, which is what flossing differentiates through.
"""
from __future__ import annotations

import math
import warnings

import torch


class LyapunovAccuracyWarning(UserWarning):
    """The exponents just computed cannot be trusted: the tangent vectors grew too collinear between two
    QRs for the dtype (``qr_every`` too long for the spread of the spectrum), or the state overflowed."""


def ordered_sum(tensors) -> torch.Tensor:
    """The sum of a sequence of equally shaped tensors, added one after the other.

    ``torch.stack(xs).sum(0)`` reduces over an outer dimension, whose kernel picks its summation order
    by the sizes of the other dimensions: a network's exponents would then depend on how many other
    networks share its ensemble (seen: 1e-7 differences that chaos amplifies). Element-wise adds in a
    fixed order give every member the same numbers in any ensemble, process or cluster layout."""
    it = iter(tensors)
    total = next(it)
    for x in it:
        total = total + x
    return total


def per_member(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """x with its member dimension ``dim`` first and everything else flattened, (E, -1): a reduction over
    dim 1 of the result is an inner (row) reduction, the same for a row whatever the number of rows."""
    return x.movedim(dim, 0).reshape(x.shape[dim], -1)


# ------------------------------------------------------------------------------------ tangents
def jvp_tangent(step):
    """Tangent map from forward-mode AD: ``(state, x, new_state, Q (..., D, k)) -> D_t Q``.

    One ``torch.func.jvp`` per tangent column, vectorised over the k columns with ``vmap``, so the
    Jacobian D_t is never materialised. Works for any step built from differentiable torch ops.
    """
    def tangent(state, x, new, Q):
        def one(v):
            return torch.func.jvp(lambda s: step(s, x), (state,), (v,))[1]
        return torch.func.vmap(one, in_dims=-1, out_dims=-1)(Q)
    return tangent


def random_orthonormal(d: int, k: int, *, generator: torch.Generator | None = None,
                       dtype=torch.float32, device=None) -> torch.Tensor:
    """A (d, k) matrix with orthonormal columns (QR of a Gaussian matrix)."""
    q, _ = torch.linalg.qr(torch.randn(d, k, generator=generator, dtype=torch.float64))
    return q.to(dtype=dtype, device=device)


# -------------------------------------------------------------------------------------- QR
def _qr_householder(Q: torch.Tensor):
    Q, R = torch.linalg.qr(Q)
    return Q, R.diagonal(dim1=-2, dim2=-1).abs()


def _qr_cholesky(Q: torch.Tensor):
    """CholeskyQR2 (Fukaya et al. 2014): two rounds of Q <- Q chol(QᵀQ)⁻ᵀ, matmuls and small
    triangular solves only. Same Q and |R_ii| as Householder up to rounding while cond(Q)² · eps < 1."""
    diag = None
    for _ in range(2):
        L = torch.linalg.cholesky(Q.mT @ Q)
        Q = torch.linalg.solve_triangular(L, Q.mT, upper=False).mT
        d = L.diagonal(dim1=-2, dim2=-1)
        diag = d if diag is None else diag * d
    return Q, diag


def _qr_cholesky64(Q: torch.Tensor):
    """One CholeskyQR pass with the Gram matrix, its factor and the solve in float64: R = chol(QᵀQ)ᵀ,
    Q <- Q R⁻¹. Cheaper than LAPACK's Householder at these sizes on CPU (bench/RESULTS.md, "QR interval
    and method"); in float64 the Gram
    stays positive definite up to cond(Q) ~ 1e7, far beyond one step of a tangent map. Falls back to
    Householder for the whole batch when any Gram is not positive definite (an exactly singular step),
    so exact zeros on diag R stay exact."""
    Qn, R = _cholesky64_qr(Q)
    return Qn, R.diagonal(dim1=-2, dim2=-1).abs()


def _cholesky64_qr(A: torch.Tensor):
    """(Q in A's dtype, R) of one float64 CholeskyQR pass; LAPACK's QR where a Gram is singular."""
    A64 = A.double()
    R, info = torch.linalg.cholesky_ex(A64.mT @ A64, upper=True)
    if bool(info.any()):
        Q, R = torch.linalg.qr(A)
        return Q, R
    return torch.linalg.solve_triangular(R, A64, upper=True, left=False).to(A.dtype), R.to(A.dtype)


class _CholeskyQR64(torch.autograd.Function):
    """(Q, diag R) of A (..., D, k) = QR from a CholeskyQR whose factor R64 (float64, upper, positive
    diagonal) was computed beforehand, as ONE autograd node with the QR adjoint written out (the one of
    ``fastqr._RNNTangentLogs``): autograd through cholesky + solve_triangular records about ten nodes
    per QR, whose bookkeeping cost more than their arithmetic at flossing sizes (bench/RESULTS.md,
    "Flossing a user's module")."""

    @staticmethod
    def forward(ctx, A, R64):
        Q64 = torch.linalg.solve_triangular(R64, A.to(torch.float64), upper=True, left=False)
        ctx.save_for_backward(Q64, R64)
        return Q64.to(A.dtype), R64.diagonal(dim1=-2, dim2=-1).to(A.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gQ, gr):
        # A = QR, m >= n, with a loss depending on Q and diag R only (gR = diag(gr)):
        # ∂A = (gQ + Q copyltu(M)) R⁻ᵀ,  M = R gRᵀ - gQᵀ Q,  copyltu(M) = tril(M, -1) + tril(M, -1)ᵀ + diag(M)
        Q, R = ctx.saved_tensors
        dt = gQ.dtype if gQ is not None else gr.dtype
        gQ = None if gQ is None else gQ.to(torch.float64)
        g = R.diagonal(dim1=-2, dim2=-1) * (0 if gr is None else gr.to(torch.float64))
        if gQ is None:
            X = Q * g.unsqueeze(-2)
        else:
            W = gQ.mT @ Q
            d = g - W.diagonal(dim1=-2, dim2=-1)
            W = W.tril(-1)
            C = W + W.mT
            C.diagonal(dim1=-2, dim2=-1).sub_(d)                  # C = -copyltu(M)
            X = gQ - Q @ C
        gA = torch.linalg.solve_triangular(R.mT, X, upper=False, left=False)       # X R⁻ᵀ
        return gA.to(dt), None


def _qr_cholesky64_fused(Q: torch.Tensor):
    """The numbers of 'cholesky64' (a float64 CholeskyQR; two passes, CholeskyQR2, for float64 data so
    that its Q is orthonormal to float64 rounding), as one autograd node with a hand-written backward;
    Householder through autograd for the whole batch where a Gram is not positive definite."""
    with torch.no_grad():
        A64 = Q.detach().to(torch.float64)
        R, info = torch.linalg.cholesky_ex(A64.mT @ A64, upper=True)
        if not bool(info.any()) and Q.dtype == torch.float64:
            Q1 = torch.linalg.solve_triangular(R, A64, upper=True, left=False)
            R2, info = torch.linalg.cholesky_ex(Q1.mT @ Q1, upper=True)
            R = R2 @ R
    if bool(info.any()):
        return _qr_householder(Q)
    return _CholeskyQR64.apply(Q, R)


QR_METHODS = {"householder": _qr_householder, "cholesky": _qr_cholesky, "cholesky64": _qr_cholesky64,
              "cholesky64_fused": _qr_cholesky64_fused}


def _log_abs(d: torch.Tensor) -> torch.Tensor:
    # guard log 0 (a tangent direction collapsed exactly): a very negative finite value, not -inf
    return torch.log(d.clamp_min(torch.finfo(d.dtype).tiny))


def _check(k: int, d: int, steps: int, transient: int, qr_every: int) -> None:
    if not 1 <= k <= d:
        raise ValueError(f"k must be in 1..{d}, got {k}")
    if qr_every < 1:
        raise ValueError(f"qr_every must be >= 1, got {qr_every}")
    if transient < 0:
        raise ValueError(f"transient must be >= 0, got {transient}")
    first_counted = -(-transient // qr_every) * qr_every  # first QR boundary at or after the transient
    if steps < 1 or first_counted >= steps:
        raise ValueError(f"steps ({steps}) must exceed the transient ({transient}, rounded up to a "
                         f"multiple of qr_every={qr_every}) so that some steps are averaged")


def lyapunov_spectrum(step, state0: torch.Tensor, inputs, k: int, *, jacobian=None,
                      transient: int = 0, qr_every: int = 1, Q0: torch.Tensor | None = None,
                      generator: torch.Generator | None = None, qr: str = "householder",
                      trajectory: torch.Tensor | None = None, return_state: bool = False,
                      step_tangents=None):
    """The first k Lyapunov exponents of the map ``state_t = step(state_{t-1}, x_t)``.

    Args:
      step: ``(state (..., D), x) -> state (..., D)``; leading dims are independent systems.
      state0: (..., D) initial state.
      inputs: a tensor whose dim 0 is time (x_t = inputs[t]), or an int T for T autonomous steps
        (x_t = None).
      k: number of exponents, 1..D.
      jacobian: optional analytic tangent map ``(state, x, new_state, Q (..., D, k)) -> D_t Q``;
        default: forward-mode JVPs (``jvp_tangent``).
      transient: steps discarded before averaging; with ``qr_every`` > 1 it is rounded up to the next
        QR boundary.
      qr_every: re-orthonormalise every this many steps (t_ons); the last step always gets a QR.
      Q0: (D, k) or (..., D, k) orthonormal start; default a random one from ``generator``.
      qr: 'householder' (LAPACK), 'cholesky' (CholeskyQR2 from matmuls), 'cholesky64' (one CholeskyQR
        pass in float64, Householder where a Gram is singular; the fastest forward on CPU) or
        'cholesky64_fused' (the same numbers as one autograd node with a hand-written backward: the
        fastest forward + backward).
      trajectory: optional precomputed states (T, ..., D) with state_t = trajectory[t-1] (e.g. from a
        fused sequence kernel); then ``step`` is only used for JVP tangents, never to advance the state.
      step_tangents: optional T maps ``Q -> D_t Q``, the t-th one for step t, prepared for the whole
        window at once (e.g. from one batched pass over its states, ``adapters.tangents.CellTangent.window``);
        then ``jacobian`` is not called.
    Returns:
      exponents (..., k) in nats per step, sorted descending; with ``return_state`` also the final
      state. Differentiable with respect to everything the step closes over.
    """
    steps = inputs if isinstance(inputs, int) else inputs.shape[0]
    d = state0.shape[-1]
    _check(k, d, steps, transient, qr_every)
    if qr not in QR_METHODS:
        raise ValueError(f"unknown qr {qr!r}; choose one of {', '.join(QR_METHODS)}")
    if step_tangents is not None and len(step_tangents) != steps:
        raise ValueError(f"step_tangents must hold one map per step ({steps}), got {len(step_tangents)}")
    orth = QR_METHODS[qr]
    tangent = jacobian or jvp_tangent(step)
    if Q0 is None:
        Q0 = random_orthonormal(d, k, generator=generator, dtype=state0.dtype, device=state0.device)
    Q = Q0.expand(*state0.shape[:-1], d, k)

    # Between QRs (qr_every > 1) each tangent column is rescaled to unit norm every step and its log norm
    # kept: QR(A diag(1/c)) has R_ii / c_i, so log R_ii = log R̃_ii + log c_i exactly, and no column over- or
    # underflows however long the interval (3·I for 100 steps, 0.1·I for 50). What rescaling cannot undo is
    # collinearity: the columns align with the top direction like e^{-(λ_1 - λ_i) t}, and once R̃_ii falls
    # to the dtype's rounding the lower exponents are lost; that is detected and warned about.
    renorm = qr_every > 1
    floor = 1000 * torch.finfo(state0.dtype).eps
    state, logs, counted, last_qr, worst = state0, [], 0, 0, None
    logc = None
    for t in range(1, steps + 1):
        x = None if isinstance(inputs, int) else inputs[t - 1]
        new = step(state, x) if trajectory is None else trajectory[t - 1]
        Q = tangent(state, x, new, Q) if step_tangents is None else step_tangents[t - 1](Q)
        state = new
        if t % qr_every == 0 or t == steps:
            Q, r = orth(Q)
            if renorm:
                rel = (r / r.amax(dim=-1, keepdim=True).clamp_min(torch.finfo(r.dtype).tiny)).amin(dim=-1)
                worst = rel.detach() if worst is None else torch.minimum(worst, rel.detach())
            if last_qr >= transient:
                logs.append(_log_abs(r) if logc is None else _log_abs(r) + logc)
                counted += t - last_qr
            last_qr, logc = t, None
        elif renorm:
            n = torch.linalg.vector_norm(Q, dim=-2)                  # (..., k) column norms
            Q = Q / n.unsqueeze(-2)
            logc = _log_abs(n) if logc is None else logc + _log_abs(n)
    total = ordered_sum(logs)  # over all QR steps, in a fixed order (the same in any ensemble)
    exponents = torch.sort(total / counted, dim=-1, descending=True).values
    if worst is not None and k > 1 and bool((worst < floor).any()):
        warnings.warn(f"qr_every={qr_every} is too long for this spectrum in {str(state0.dtype).replace('torch.', '')}: "
                      f"between two QRs the tangent vectors became collinear to {float(worst.min()):.1e} "
                      f"(rounding level {floor:.0e}), so the lower exponents are not resolved; use a shorter "
                      f"qr_every, fewer exponents k or float64", LyapunovAccuracyWarning, stacklevel=2)
    if not bool(torch.isfinite(exponents).all()) and not bool(torch.isfinite(state.detach()).all()):
        warnings.warn("the exponents are not finite because the state overflowed (left the float range): "
                      "forward-mode tangents at an infinite state are NaN (inf * 0) for a step map written as "
                      "a matrix product; rescale the map or its inputs, or pass an analytic jacobian",
                      LyapunovAccuracyWarning, stacklevel=2)
    return (exponents, state) if return_state else exponents


# ---------------------------------------------------------------- long-term Jacobian diagnostics
def _graded_log_svdvals(logd: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    """log singular values of diag(exp(logd)) U (U upper triangular, ±1 diagonal), float64, descending.

    The graded factor may span far more than float64's range over long horizons, so the large
    singular values come from the matrix scaled by its largest row and the small ones from its
    inverse scaled by its smallest row; values that underflow in both (a dynamic range beyond about
    1400 nats) fall back to the grading itself, which they equal asymptotically."""
    fallback = torch.sort(logd, dim=-1, descending=True).values
    hi = logd.max(dim=-1, keepdim=True).values
    lo = logd.min(dim=-1, keepdim=True).values
    if not bool((U.diagonal(dim1=-2, dim2=-1) != 0).all()) or not bool(torch.isfinite(U).all()):
        return fallback  # an exactly singular step (e.g. dead ReLU units): σ_min = 0, κ₂ = ∞ up to log(tiny)
    s_top = torch.linalg.svdvals(torch.exp(logd - hi)[..., :, None] * U)       # σ_i / e^hi
    Uinv = torch.linalg.solve_triangular(U, torch.eye(U.shape[-1], dtype=U.dtype), upper=True)
    s_inv = torch.linalg.svdvals(Uinv * torch.exp(lo - logd)[..., None, :])     # e^lo / σ_i
    floor = 1e-250
    from_top = torch.log(s_top.clamp_min(floor)) + hi
    from_bottom = (lo - torch.log(s_inv.clamp_min(floor))).flip(-1)
    return torch.where(s_top > floor, from_top, torch.where(s_inv.flip(-1) > floor, from_bottom, fallback))


def _factor(orth, A: torch.Tensor):
    """(Q, R) of A by one of QR_METHODS (which return only |diag R|): R = Qᵀ A, upper triangular."""
    if orth is _qr_cholesky64:
        return _cholesky64_qr(A)
    if orth is _qr_householder:
        return torch.linalg.qr(A)
    Q, _ = orth(A)
    return Q, torch.triu(Q.mT @ A)


@torch.no_grad()
def long_term_jacobian(step, state0: torch.Tensor, inputs, horizons, *, jacobian=None,
                       k: int | None = None, qr: str = "householder", transient: int | None = None) -> dict:
    """Singular values of the long-term Jacobian T_t = D_t ⋯ D_1 = ∂state_t/∂state_0 at given horizons.

    Stable for long horizons: T_t is kept as Q · diag(e^logd) · U with Q orthonormal (a QR every
    step) and U upper triangular with ±1 on its diagonal, so no product of raw Jacobians ever over- or
    underflows.

    Args:
      step, state0, inputs, jacobian: as for ``lyapunov_spectrum`` (full tangent space, k = D).
      horizons: increasing ints in 1..T.
      k: also report the condition number of the top-k subspace, σ_1/σ_k (default D).
      qr: the re-orthonormalisation, as for ``lyapunov_spectrum`` (any QR with |R_ii| right will do:
        signs are absorbed into U).
      transient: also return the full Lyapunov spectrum of the whole window from the same pass: the QRs
        here are those of ``lyapunov_spectrum(..., k=D, Q0=I, transient=transient, qr=qr)`` step for step
        (the same tangent map from the same identity), so its ``exponents`` are those numbers exactly, at
        no extra cost (a snapshot needs both; computing them apart ran the window's tangent space twice).
    Returns dict of tensors (H = len(horizons), leading dims of state0 as "...") on the CPU, float64:
      ``horizons`` (H,), ``log_sv`` (H, ..., D) descending, ``log_kappa`` (H, ...) = log σ_1/σ_D,
      ``log_kappa_k`` (H, ...) = log σ_1/σ_k; with ``transient``, ``exponents`` (..., D) descending, in
      the dtype ``lyapunov_spectrum`` returns them.
    """
    steps = inputs if isinstance(inputs, int) else inputs.shape[0]
    horizons = sorted(int(h) for h in horizons)
    if not horizons or horizons[0] < 1 or horizons[-1] > steps:
        raise ValueError(f"horizons must be in 1..{steps}, got {horizons}")
    d = state0.shape[-1]
    k = d if k is None else k
    if not 1 <= k <= d:
        raise ValueError(f"k must be in 1..{d}, got {k}")
    if qr not in QR_METHODS:
        raise ValueError(f"unknown qr {qr!r}; choose one of {', '.join(QR_METHODS)}")
    if transient is not None:
        _check(d, d, steps, transient, 1)
    orth = QR_METHODS[qr]
    tangent = jacobian or jvp_tangent(step)
    batch = state0.shape[:-1]
    Q = torch.eye(d, dtype=state0.dtype, device=state0.device).expand(*batch, d, d)
    logs = []                                    # log |R_ii| after the transient (``transient``)
    logd = torch.zeros(*batch, d, dtype=torch.float64)
    U = torch.eye(d, dtype=torch.float64).expand(*batch, d, d)
    state, out, want = state0, [], set(horizons)
    dead = torch.zeros(batch, dtype=torch.long)  # directions a step mapped exactly to zero (rank lost)
    dead_at = []
    for t in range(1, steps + 1):
        x = None if isinstance(inputs, int) else inputs[t - 1]
        new = step(state, x)
        Q, R = _factor(orth, tangent(state, x, new, Q))
        state = new
        if transient is not None and t > transient:
            logs.append(_log_abs(R.diagonal(dim1=-2, dim2=-1).abs()))   # as lyapunov_spectrum logs them
        R = R.to(dtype=torch.float64, device="cpu")
        dead = torch.maximum(dead, (R.diagonal(dim1=-2, dim2=-1) == 0).sum(-1))
        # T_{t} = Q' R diag(d) U = Q' diag(d) (diag(d)⁻¹ R diag(d)) U; re-grade so U keeps a ±1 diagonal
        ratio = torch.exp((logd[..., None, :] - logd[..., :, None]).clamp(max=300.0))  # d_j / d_i, no overflow
        M = torch.triu(R * ratio) @ U
        dm = M.diagonal(dim1=-2, dim2=-1)
        logd = logd + _log_abs(dm.abs())
        # divide by |dm|, not dm: a negative R_ii (Householder's signs) must stay in U, as a -1 on its
        # diagonal, or the next step multiplies the wrong matrix (singular values of a non-normal product)
        U = M / torch.where(dm == 0, torch.ones_like(dm), dm.abs())[..., :, None]
        if t in want:
            out.append(_graded_log_svdvals(logd, U))
            dead_at.append(dead.clone())
        if t >= horizons[-1] and transient is None:
            break
    log_sv = torch.stack(out)
    # an exactly singular product has σ = 0 in the lost directions: -inf, so κ₂ = inf, never a big finite number
    lost = torch.arange(d) >= (d - torch.stack(dead_at))[..., None]   # per horizon: lost by then, not by the end
    log_sv = torch.where(lost, torch.tensor(-math.inf, dtype=log_sv.dtype), log_sv)
    out = {"horizons": torch.tensor(horizons), "log_sv": log_sv,
           "log_kappa": log_sv[..., 0] - log_sv[..., -1],
           "log_kappa_k": log_sv[..., 0] - log_sv[..., k - 1]}
    if transient is not None:
        out["exponents"] = torch.sort(ordered_sum(logs) / (steps - transient), dim=-1, descending=True).values
    return out


def gradient_vs_horizon(step, state0: torch.Tensor, inputs, *, loss=None,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """How much error signal reaches τ steps back: ‖∂L/∂state_{T-τ}‖ for τ = 0..T.

    Runs the map forward for T steps and backpropagates ``loss(state_T) -> (...)`` (one loss per
    independent system; default a fixed random unit projection uᵀ state_T, so the result is
    ‖T_{T←T-τ}ᵀ u‖). Returns (T + 1, ...) norms; index τ is the horizon.
    """
    steps = inputs if isinstance(inputs, int) else inputs.shape[0]
    if loss is None:
        u = torch.randn(state0.shape[-1], generator=generator, dtype=torch.float64)
        u = (u / u.norm()).to(state0)
        loss = lambda s: s @ u  # noqa: E731
    with torch.enable_grad():
        state = state0.detach().requires_grad_(True)
        states = [state]
        for t in range(steps):
            state = step(state, None if isinstance(inputs, int) else inputs[t])
            states.append(state)
        grads = torch.autograd.grad(loss(state).sum(), states, allow_unused=True)
    if all(g is not None for g in grads):       # one norm over the stacked gradients, not T + 1 small ones
        return torch.stack(grads[::-1]).detach().norm(dim=-1)
    norms = [torch.zeros(state0.shape[:-1], device=state0.device) if g is None else g.detach().norm(dim=-1)
             for g in grads]
    return torch.stack(norms[::-1])


def volume_growth(step, state0: torch.Tensor, inputs, *, transient: int = 0) -> torch.Tensor:
    """Time average of log|det D_t| after the transient, from explicit Jacobians (jacrev).

    The sum of all D exponents must equal it (a check, meant for small D). Returns (...)."""
    steps = inputs if isinstance(inputs, int) else inputs.shape[0]
    d = state0.shape[-1]
    flat = state0.reshape(-1, d)
    total = torch.zeros(flat.shape[0], dtype=torch.float64)
    state = state0
    for t in range(steps):
        x = None if isinstance(inputs, int) else inputs[t]
        if t >= transient:
            jac = torch.func.jacrev(lambda s: step(s, x))(state)  # (..., D, ..., D)
            n = flat.shape[0]
            jac = jac.reshape(n, d, n, d)
            blocks = torch.stack([jac[i, :, i, :] for i in range(n)])
            total += torch.linalg.slogdet(blocks.double()).logabsdet
        state = step(state, x)
    return (total / (steps - transient)).reshape(state0.shape[:-1])


def forecast_horizon(lambda1: float, *, tol: float = 1e-3) -> float:
    """Steps back a gradient can reach before shrinking below ``tol``: log(tol)/λ_1 for λ_1 < 0,
    inf otherwise (no decay along the leading direction)."""
    return math.log(tol) / lambda1 if lambda1 < 0 else math.inf
