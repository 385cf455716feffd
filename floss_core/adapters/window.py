"""The flossing loss of one window of a user's module (``_window_loss``): the one place the flossing term
and the flossing phase compute it, and where its speed is decided (issue 17, item 4).
"""
from __future__ import annotations

import torch

from ..flossing import flossing_loss
from ..lyapunov import lyapunov_spectrum
from .stepper import Stepper, _check_k, _q0


def _window_loss(st: Stepper, xs, state0, *, k, transient, qr_every, target, Q0, seed, state_horizon=None):
    """Flossing loss of one window from a detached start, and the window's final (detached) state.

    ``state_horizon``: the gradient through the state trajectory runs back at most this many steps (the
    trajectory is detached every state_horizon steps; the lab's default design, bench/floss_study.py);
    None: through the whole window (the reference code)."""
    k = _check_k(k, st.dim)
    trajectory = None
    if state_horizon is not None:
        s, states = state0.detach(), []
        for t in range(xs.shape[0]):
            if t and t % state_horizon == 0:
                s = s.detach()
            s = st.step(s, xs[t])
            states.append(s)
        trajectory = torch.stack(states)
    lam, end = lyapunov_spectrum(st.step, state0.detach(), xs, k, jacobian=st.tangent, transient=transient,
                                 qr_every=qr_every, Q0=_q0(st.dim, k, seed, state0) if Q0 is None else Q0,
                                 trajectory=trajectory, return_state=True)
    return flossing_loss(lam, target=target).mean(), lam.detach(), end.detach()


def _check_horizon(state_horizon) -> None:
    if state_horizon is not None and (isinstance(state_horizon, bool) or not isinstance(state_horizon, int)
                                      or state_horizon < 1):
        raise ValueError(f"state_horizon must be an integer >= 1 or None, got {state_horizon!r}")
