"""Gradient flossing of a user's module, in the paper's two modes (Engelken, NeurIPS 2023):
``flossing_loss_term`` to add to a task loss every M steps, and ``floss``, a separate phase of Adam
steps on the flossing loss alone, with its safety rails (issue 17, item 6): it stops at the target, and
given the user's validation loss it stops when that rises, restoring the weights of the last check that
passed. The paper's modes are before training and intermittently during it: flossing a trained model
to the edge of chaos undoes what the task taught it (a trained LSTM LM: validation perplexity 657 ->
2492 after 30 flossing steps), which the validation rail catches.

Both use the lab's flossing design (``train.LAB_FLOSS``, chosen by bench/floss_study.py) by default: the
state-trajectory gradient truncated to ``STATE_HORIZON`` steps and, while the module is chaotic, each
parameter tensor's gradient clipped to ``CLIP``.
"""
from __future__ import annotations

import math
from collections import deque

import torch

from ..configs import LAB_FLOSS
from .resolve import resolve_module
from .stepper import _prepare, module_step
from .window import _check_horizon, _window_loss

# train.LAB_FLOSS's values: the state-trajectory gradient truncated to 3 steps, and while the module is
# chaotic each parameter tensor's gradient clipped to 0.03
STATE_HORIZON = LAB_FLOSS.state_horizon
CLIP = LAB_FLOSS.clip
CLIP_CHAOTIC_ONLY = LAB_FLOSS.clip_chaotic_only
# the phase stops at the target once the mean of the last STOP_WINDOW windows' exponents is within STOP_TOL
# of it, every one of the k (the lab's stopping tolerance, LAB_FLOSS.stop_tol, measured there on one long
# window; here the mean of short windows stands in for it, so no extra measurement is paid)
STOP_TOL = LAB_FLOSS.stop_tol
STOP_WINDOW = 10
# the validation rail: a check every VALIDATE_EVERY steps; the phase stops when the validation loss is more
# than MAX_RISE times the one before the phase
VALIDATE_EVERY = 10
MAX_RISE = 1.25
# why a phase stopped (the result's ``stopped``)
STOPPED = ("steps", "target", "validation", "diverged")


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
    st, xs, state0, _ = _prepare(resolve_module(module), inputs, h0)
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


def _check_rails(validate, validate_every, max_rise, stop_tol, stop_window) -> None:
    if validate is not None and not callable(validate):
        raise ValueError(f"validate must be a callable () -> float (your task loss on a validation batch), "
                         f"got {type(validate).__name__}")
    if isinstance(validate_every, bool) or not isinstance(validate_every, int) or validate_every < 1:
        raise ValueError(f"validate_every must be an integer >= 1, got {validate_every!r}")
    if isinstance(max_rise, bool) or not (isinstance(max_rise, (int, float)) and math.isfinite(max_rise)
                                          and max_rise >= 1):
        raise ValueError(f"max_rise must be a number >= 1 (1.25: stop when the validation loss rises by "
                         f"more than 25 %), got {max_rise!r}")
    if stop_tol is not None and (isinstance(stop_tol, bool) or not (isinstance(stop_tol, (int, float))
                                                                    and math.isfinite(stop_tol) and stop_tol >= 0)):
        raise ValueError(f"stop_tol must be a number >= 0 or None (never stop at the target), got {stop_tol!r}")
    if isinstance(stop_window, bool) or not isinstance(stop_window, int) or stop_window < 1:
        raise ValueError(f"stop_window must be an integer >= 1, got {stop_window!r}")


def _validation(validate) -> float:
    """The user's validation loss as a float (NaN when it is not a finite number: a rise, never a pass)."""
    with torch.no_grad():
        v = validate()
    v = float(v.detach() if isinstance(v, torch.Tensor) else v)
    return v if math.isfinite(v) else math.nan


def _risen(v: float, before: float, max_rise: float) -> bool:
    """More than ``max_rise`` times the loss before the phase (a loss below 0: more than (max_rise − 1)·|before|
    above it); NaN always counts as risen."""
    return not v <= before + (max_rise - 1) * abs(before)


def floss(module, inputs_or_sampler, *, k: int, steps: int, lr: float = 1e-3, transient: int = 0,
          qr_every: int = 1, h0=None, target: float = 0.0, params=None, seed: int = 0,
          carry_state: bool = True, on_step=None, state_horizon: int | None = STATE_HORIZON,
          clip: float = CLIP, clip_chaotic_only: bool = CLIP_CHAOTIC_ONLY,
          stop_tol: float | None = STOP_TOL, stop_window: int = STOP_WINDOW,
          validate=None, validate_every: int = VALIDATE_EVERY, max_rise: float = MAX_RISE) -> dict:
    """A separate flossing phase (the paper's mode): up to ``steps`` Adam steps on the flossing loss alone.

    Floss before training or between training steps (the paper's modes). Flossing a trained model
    pushes it to the edge of chaos at the cost of what it learned: pass ``validate`` to be stopped.

    Args:
      inputs_or_sampler: one input window (the same every step), or ``sampler(i) -> inputs`` giving a
        fresh window per step (the paper draws fresh random bits: 55 steps, 16 of them transient).
        Windows are detached: what your own model computed (an embedding's output) is data here.
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
      stop_tol, stop_window: stop at the target once the mean of the last ``stop_window`` windows'
        exponents (each of the k, averaged over the batch) is within ``stop_tol`` of ``target``
        (default 0.03 over 10 windows; None: always run ``steps``).
      validate: ``() -> float``, your task loss on your validation batch with the module's current
        weights (called under torch.no_grad; put your model in eval() inside it if you need to), e.g.
        ``lambda: loss_fn(model(x_val), y_val)``. Called before the first step, every
        ``validate_every`` steps and after the last: the phase stops as soon as it exceeds
        ``max_rise`` × its value before the phase (for a loss < 0: rises by more than
        (max_rise − 1)·|before|; NaN counts as a rise), and the weights of the last check that passed
        are restored (the Adam state is not). None (default): no validation.
    Returns:
      dict ``loss`` (per-step floats), ``exponents`` (the last window's, (B, k) floats), ``steps``
      done, ``stopped`` (why it stopped: 'steps' (all done), 'target', 'validation' or 'diverged'),
      ``diverged_step`` (the step whose loss was not finite, where the phase stopped without
      updating; None when all went well), ``validation_before`` / ``validation_after`` (the validation
      loss before the phase and of the weights the module ends with; None without ``validate``),
      ``validation`` ([step, loss] per check; step = steps done when it ran) and ``restored_step``
      (the step whose weights were restored after a failed check; None when none was).
    """
    _check_floss(steps, lr)
    _check_horizon(state_horizon)
    _check_rails(validate, validate_every, max_rise, stop_tol, stop_window)
    if isinstance(clip, bool) or not (isinstance(clip, (int, float)) and math.isfinite(clip) and clip >= 0):
        raise ValueError(f"clip must be a number >= 0, got {clip!r}")
    module = resolve_module(module)
    tensors = list(module_step(module, params=params).params)
    if not tensors:
        raise ValueError("nothing to floss: a plain step function needs params=[the tensors to update]")
    # Adam on float32 copies of float16 / bfloat16 tensors (in float16 its eps = 1e-8 and small squared gradients
    # underflow to 0: the first step wrote inf / NaN into the weights); copied back after every step
    masters = {id(t): t.detach().float().requires_grad_() for t in tensors if t.dtype in (torch.float16, torch.bfloat16)}
    opt = torch.optim.Adam([masters.get(id(t), t) for t in tensors], lr=lr)
    history, diverged, carried, lam, top = [], None, None, None, None
    recent = deque(maxlen=stop_window)                 # the last windows' exponents, (k,) each
    stopped = "steps"
    checks, restored, saved = [], None, None
    h0 = _detached(h0)

    def check() -> bool:
        """One validation: True if it passed (its weights are kept as the ones to restore)."""
        nonlocal saved, restored
        v = _validation(validate)
        checks.append([len(history), v])
        if checks[0] is not checks[-1] and _risen(v, checks[0][1], max_rise):
            with torch.no_grad():
                for t, s in zip(tensors, saved[1]):
                    t.copy_(s)
                    if id(t) in masters:
                        masters[id(t)].copy_(s)
            restored = saved[0]
            return False
        saved = (len(history), [t.detach().clone() for t in tensors])
        return True

    if validate is not None:
        check()
        if math.isnan(checks[0][1]):
            raise ValueError("validate() gave a loss that is not a finite number before flossing: nothing to "
                             "compare the phase against")
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
            diverged, stopped = i, "diverged"
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
        for t in tensors:
            if id(t) in masters:
                masters[id(t)].grad = None if t.grad is None else t.grad.float()
        opt.step()
        with torch.no_grad():
            for t in tensors:
                if id(t) in masters:
                    t.copy_(masters[id(t)])
        history.append(float(loss.detach()))
        if on_step:
            on_step(i, history[-1])
        if validate is not None and (i + 1) % validate_every == 0 and not check():
            stopped = "validation"
            break
        recent.append(lam.reshape(-1, lam.shape[-1]).mean(0))
        if stop_tol is not None and len(recent) == stop_window and \
                float((torch.stack(list(recent)).mean(0) - target).abs().max()) <= stop_tol:
            stopped = "target"
            break
    if validate is not None and stopped != "validation" and checks[-1][0] != len(history) and not check():
        stopped = "validation"
    return {"loss": history, "exponents": None if lam is None else lam.tolist(), "steps": len(history),
            "stopped": stopped, "diverged_step": diverged,
            "validation_before": checks[0][1] if checks else None,
            "validation_after": (checks[-1][1] if restored is None else
                                 next(v for s, v in checks if s == restored)) if checks else None,
            "validation": checks, "restored_step": restored}
