"""Gradient flossing of a user's module, in the paper's two modes (Engelken, NeurIPS 2023):
``flossing_loss_term`` to add to a task loss every M steps, and ``floss``, a separate phase of Adam
steps on the flossing loss alone.

Both use the lab's flossing design (``train.LAB_FLOSS``, chosen by bench/floss_study.py) by default: the
state-trajectory gradient truncated to ``STATE_HORIZON`` steps and, while the module is chaotic, each
parameter tensor's gradient clipped to ``CLIP``.
"""
from __future__ import annotations

import math

import torch

from ..configs import LAB_FLOSS
from .stepper import _prepare, module_step
from .window import _check_horizon, _window_loss

# train.LAB_FLOSS's values: the state-trajectory gradient truncated to 3 steps, and while the module is
# chaotic each parameter tensor's gradient clipped to 0.03
STATE_HORIZON = LAB_FLOSS.state_horizon
CLIP = LAB_FLOSS.clip
CLIP_CHAOTIC_ONLY = LAB_FLOSS.clip_chaotic_only


def flossing_loss_term(module, inputs, *, k: int, transient: int = 0, qr_every: int = 1, h0=None,
                       target: float = 0.0, Q0: torch.Tensor | None = None, seed: int = 0,
                       state_horizon: int | None = STATE_HORIZON) -> torch.Tensor:
    """The flossing loss of the module on ``inputs``: mean over the batch and the first k exponents
    of (λ_i − target)² (Engelken 2023, eq. 4), a scalar differentiable w.r.t. the module's parameters.

    Add ``weight * flossing_loss_term(...)`` to your task loss every M steps (the paper's joint mode).
    The initial state is detached and the tangent start is the same every call (``seed``), as in the
    reference code. Start on the attractor: pass a state your model reached as ``h0``, or discard a
    transient (from a zero state the first steps expand more than the long-run dynamics do, and
    flossing them to 0 over-contracts the network). ``state_horizon`` (default 3): how far back the
    gradient follows the state trajectory; None follows it through the whole window like the reference,
    whose gradient in a chaotic network grows like e^{λ_1 t} and is mostly noise (bench/floss_study.py).
    """
    _check_horizon(state_horizon)
    st, xs, state0, _ = _prepare(module, inputs, h0)
    return _window_loss(st, xs, state0, k=k, transient=transient, qr_every=qr_every, target=target, Q0=Q0,
                        seed=seed, state_horizon=state_horizon)[0]


def _check_floss(steps, lr) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    if isinstance(lr, bool) or not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")


def _detached(x):
    """Tensors (or a tuple of them, an LSTM's (h, c)) cut from any graph that made them; other values as given."""
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, tuple):
        return tuple(_detached(v) for v in x)
    return x


def floss(module, inputs_or_sampler, *, k: int, steps: int, lr: float = 1e-3, transient: int = 0,
          qr_every: int = 1, h0=None, target: float = 0.0, params=None, seed: int = 0,
          carry_state: bool = True, on_step=None, state_horizon: int | None = STATE_HORIZON,
          clip: float = CLIP, clip_chaotic_only: bool = CLIP_CHAOTIC_ONLY) -> dict:
    """A separate flossing phase (the paper's mode): ``steps`` Adam steps on the flossing loss alone.

    Args:
      inputs_or_sampler: one input window (the same every step), or ``sampler(i) -> inputs`` giving a
        fresh window per step (the paper draws fresh random bits: 55 steps, 16 of them transient).
      k, transient, qr_every, h0, target, seed: as for ``flossing_loss_term``.
      lr: the phase's own Adam (betas 0.9/0.999).
      state_horizon: how far back the gradient follows the state trajectory (default 3, the lab's design);
        None: the whole window (the reference code).
      clip: each parameter tensor's gradient norm is clipped to this before the Adam step (default 0.03,
        the lab's design; 0: no clipping, the reference code). bench/floss_study.py measured both.
      clip_chaotic_only: clip only while the module is chaotic, i.e. while a running mean (0.9) of the
        windows' top exponent is > 0 (default, the lab's design: clipping a stable network's flossing
        gradient pushed its λ_1 above 0); False: clip every step.
      params: tensors to update; default every parameter of the module (recurrent weights and
        biases, the paper's J, b and W_in). A plain step function needs them here.
      carry_state: each window starts where the previous one ended (so on the attractor, like the
        paper's trained initial state); the first starts from ``h0`` (default zeros). False: every
        window starts from ``h0``.
      on_step: ``(i, loss: float)`` called after each step.
    Returns:
      dict ``loss`` (per-step floats), ``exponents`` (the last window's, (B, k) floats), ``steps``
      done, ``diverged_step`` (the step whose loss was not finite, where the phase stopped without
      updating; None when all went well).
    """
    _check_floss(steps, lr)
    _check_horizon(state_horizon)
    if isinstance(clip, bool) or not (isinstance(clip, (int, float)) and math.isfinite(clip) and clip >= 0):
        raise ValueError(f"clip must be a number >= 0, got {clip!r}")
    tensors = list(module_step(module, params=params).params)
    if not tensors:
        raise ValueError("nothing to floss: a plain step function needs params=[the tensors to update]")
    opt = torch.optim.Adam(tensors, lr=lr)
    history, diverged, carried, lam, top = [], None, None, None, None
    h0 = _detached(h0)
    for i in range(steps):
        # detached: a window computed by the user's code (an embedding's output) is data here; without this
        # a fixed window failed at step 2 ("backward through the graph a second time") and a sampler
        # without no_grad piled the flossing gradient into the embedding's weights
        inputs = _detached(inputs_or_sampler(i) if callable(inputs_or_sampler) else inputs_or_sampler)
        st, xs, state0, _ = _prepare(module, inputs, h0)
        if carried is not None and carried.shape == state0.shape:
            state0 = carried
        loss, lam, end = _window_loss(st, xs, state0, k=k, transient=transient, qr_every=qr_every,
                                      target=target, Q0=None, seed=seed, state_horizon=state_horizon)
        if not torch.isfinite(loss):
            diverged = i
            break
        carried = end if carry_state and bool(torch.isfinite(end).all()) else None
        lam1 = float(lam[..., 0].mean())                       # this window's top exponent (no gradient)
        top = lam1 if top is None else 0.9 * top + 0.1 * lam1
        opt.zero_grad()
        loss.backward()
        if clip > 0 and (top > 0 or not clip_chaotic_only):
            for t in tensors:   # per tensor, as the lab's training does per parameter array
                if t.grad is not None:
                    torch.nn.utils.clip_grad_norm_([t], clip)
        opt.step()
        history.append(float(loss.detach()))
        if on_step:
            on_step(i, history[-1])
    return {"loss": history, "exponents": None if lam is None else lam.tolist(), "steps": len(history),
            "diverged_step": diverged}
