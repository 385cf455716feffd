"""The flossing loss of one window of a user's module (``_window_loss``): the one place the flossing term
and the flossing phase compute it, and where its speed is decided (issue 17, item 4).

For the standard cells (``tangents.CellTangent``) a window costs a few batched passes and one kernel call
instead of an autograd graph per step:
1. the state trajectory: its no-grad restart states from torch's fused sequence op, then its graph with
   ``state_horizon`` batched step calls (``_trajectory_batched``);
2. every step's per-layer Jacobians from one batched pass over the trajectory (``CellTangent.layers``);
3. tangents and QRs of all steps as ONE autograd node with a hand-written backward
   (``fastqr.layered_tangent_logs``: CholeskyQR with a float64 Gram, Householder where it fails).
With ``qr_every`` > 1, or where the per-layer Jacobians would exceed ``JACOBIAN_ELEMENTS``, step 3 is
``lyapunov_spectrum`` with the analytic tangent applied to the k columns (``CellTangent.window``) and the
fused CholeskyQR. Same loss and gradients as forward-mode tangents through Householder QR, to rounding
(tests/test_tangents.py); the cost is in bench/RESULTS.md, "Flossing a user's module".
"""
from __future__ import annotations

import warnings

import torch

from ..flossing import flossing_loss
from ..fastqr import layered_tangent_logs
from ..lyapunov import LyapunovAccuracyWarning, _check, lyapunov_spectrum, ordered_sum
from .stepper import Stepper, _check_k, _q0
from .tangents import CellTangent

# The per-layer Jacobians are kept for the whole window (and as many gradients): above this many numbers
# the analytic tangent is applied to the k columns step by step instead (memory, not speed: 2^23 float32
# numbers are 32 MiB; hidden 64 LSTM, 2 layers, 35 steps: 1.1 million).
JACOBIAN_ELEMENTS = 1 << 23
EXPLICIT = None   # tests and benches: True / False force one mode, None chooses by JACOBIAN_ELEMENTS


_Q0_CACHE: dict = {}   # (d, k, seed, dtype, device) -> the tangent start (never written to)


def _q0_cached(d: int, k: int, seed: int, like: torch.Tensor) -> torch.Tensor:
    """``_q0`` kept between calls: the same start every call (a seeded Gaussian's QR, ~0.25 ms; a flossing
    term is evaluated every few training steps). Nothing writes into it (the kernels copy it)."""
    key = (d, k, seed, like.dtype, like.device)
    Q0 = _Q0_CACHE.get(key)
    if Q0 is None:
        Q0 = _q0(d, k, seed, like)
        if not torch.is_inference_mode_enabled():
            if len(_Q0_CACHE) >= 16:
                _Q0_CACHE.clear()
            _Q0_CACHE[key] = Q0
    return Q0


def _jacobian_elements(tangent: CellTangent, steps: int, batch: int) -> int:
    n = tangent.dim // tangent.n_layers                     # H, or 2H for an LSTM
    return steps * batch * tangent.n_layers * 2 * n * tangent.hidden


def _trajectory(st: Stepper, xs, state0, state_horizon):
    """States (T, B, D) after each step, the gradient cut every ``state_horizon`` steps (None: never)."""
    s, states = state0.detach(), []
    for t in range(xs.shape[0]):
        if state_horizon is not None and t and t % state_horizon == 0:
            s = s.detach()
        s = st.step(s, xs[t])
        states.append(s)
    return torch.stack(states)


def _trajectory_batched(st: Stepper, xs, state0, state_horizon):
    """``_trajectory``'s states and gradient graph with ``state_horizon`` batched step calls instead of T.

    The values come first from a sequential pass without autograd; then the graph of every stretch of
    ``state_horizon`` steps between two cuts starts from the (detached) value before it, so the j-th step
    of all stretches is ONE step call over the stretches as a batch. Same states (to rounding: a batched
    matmul may sum in another order; nothing accumulates, every stretch restarts from the exact value)
    and the same gradient paths as ``_trajectory``."""
    T, h = xs.shape[0], state_horizon
    if isinstance(st.tangent, CellTangent):
        values = st.tangent.states_at(state0.detach(), xs, h)
    else:
        with torch.no_grad():
            s, values = state0, []
            for t in range(0, T - h, h):           # only the states before each cut are needed
                for x in xs[t:t + h]:
                    s = st.step(s, x)
                values.append(s)
    n = -(-T // h)                             # stretches; the last one padded with zero inputs
    pad = n * h - T
    xp = torch.cat([xs, xs.new_zeros(pad, *xs.shape[1:])]) if pad else xs
    xp = xp.unflatten(0, (n, h))               # (n, h, B, C)
    s = torch.stack([state0.detach()] + values)                 # (n, B, D), no gradient
    outs = []
    for j in range(h):
        s = st.step(s, xp[:, j])
        outs.append(s)
    return torch.stack(outs, dim=1).flatten(0, 1)[:T]


def _window_loss(st: Stepper, xs, state0, *, k, transient, qr_every, target, Q0, seed, state_horizon=None):
    """Flossing loss of one window from a detached start, and the window's final (detached) state.

    ``state_horizon``: the gradient through the state trajectory runs back at most this many steps (the
    trajectory is detached every state_horizon steps; the lab's default design, bench/floss_study.py);
    None: through the whole window (the reference code).

    The standard cells (an analytic ``tangents.CellTangent``) take the fast path of the module docstring;
    anything else forward-mode tangents and Householder QR, step by step (the path before issue 17)."""
    k = _check_k(k, st.dim)
    start = state0.detach()
    if isinstance(st.tangent, CellTangent) and not isinstance(xs, int):
        Q0 = _q0_cached(st.dim, k, seed, state0) if Q0 is None else Q0
        trajectory = _trajectory(st, xs, start, state_horizon) if state_horizon is None or \
            state_horizon >= xs.shape[0] else _trajectory_batched(st, xs, start, state_horizon)
        # the state each step starts from, as lyapunov_spectrum hands it to a tangent map (not detached: the
        # gradient into it is the one forward-mode AD gives)
        before = torch.cat([start[None], trajectory[:-1]])
        explicit = EXPLICIT if EXPLICIT is not None else \
            _jacobian_elements(st.tangent, xs.shape[0], trajectory.shape[1]) <= JACOBIAN_ELEMENTS
        if explicit and qr_every == 1:
            _check(k, st.dim, xs.shape[0], transient, qr_every)
            As, Bs, cells, order = st.tangent.layers(before, xs)
            Q0 = Q0.to(start)
            logs = layered_tangent_logs(As, Bs, Q0 if order is None else Q0[..., order, :],   # (T, B, k)
                                        feed=st.tangent.hidden, cells=cells)
            lam = torch.sort(ordered_sum(logs[transient:].unbind(0)) / (xs.shape[0] - transient),
                             dim=-1, descending=True).values
            end = trajectory[-1]
            if not bool(torch.isfinite(lam).all()) and not bool(torch.isfinite(end.detach()).all()):
                warnings.warn("the exponents are not finite because the state overflowed (left the float "
                              "range); rescale the module's weights or its inputs", LyapunovAccuracyWarning,
                              stacklevel=3)
        else:   # the k columns step by step (explicit D_t only when a test asks: D² per step)
            lam, end = lyapunov_spectrum(st.step, start, xs, k, transient=transient, qr_every=qr_every, Q0=Q0,
                                         qr="cholesky64_fused", trajectory=trajectory, return_state=True,
                                         step_tangents=st.tangent.window(before, xs, explicit=EXPLICIT is True))
        return flossing_loss(lam, target=target).mean(), lam.detach(), end.detach()
    Q0 = _q0(st.dim, k, seed, state0) if Q0 is None else Q0
    trajectory = None
    if state_horizon is not None:
        trajectory = _trajectory(st, xs, start, state_horizon)
    lam, end = lyapunov_spectrum(st.step, start, xs, k, jacobian=st.tangent, transient=transient,
                                 qr_every=qr_every, Q0=Q0, trajectory=trajectory, return_state=True)
    return flossing_loss(lam, target=target).mean(), lam.detach(), end.detach()


def _check_horizon(state_horizon) -> None:
    if state_horizon is not None and (isinstance(state_horizon, bool) or not isinstance(state_horizon, int)
                                      or state_horizon < 1):
        raise ValueError(f"state_horizon must be an integer >= 1 or None, got {state_horizon!r}")
