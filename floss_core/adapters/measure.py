"""Measurements of a user's module (no training): its states, Lyapunov spectrum, long-term Jacobian and
gradient-vs-horizon diagnostics, and the trainability forecast read from λ_1.

``trajectory``, ``spectrum`` and ``diagnostics`` take the module and inputs in its own layout (see the
package docstring) and run ``lyapunov``'s pure functions on the module's one-step map
(``stepper.module_step``); ``forecast`` turns λ_1 into a horizon and a one-line verdict against a
task's delay, ``forecast_model`` does it for a fresh network of our own.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ..lyapunov import forecast_horizon, gradient_vs_horizon, jvp_tangent, long_term_jacobian, lyapunov_spectrum
from .resolve import resolve_module
from .stepper import _check_k, _prepare, _q0

HORIZONS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
# λ_1 in [0, EDGE_OF_CHAOS] nats/step reads as "marginal" (a flossed network lands there, e.g. +0.003),
# above it as chaotic: an RNN with g = 2 at λ_1 = +0.04 failed a delay-10 copy task (README table)
EDGE_OF_CHAOS = 0.01


# ------------------------------------------------------------------------------------ states and spectrum
def trajectory(module, inputs, *, h0=None) -> torch.Tensor:
    """Flat states of a forward pass through the adapted step: (T, B, D) ((T, D) unbatched).
    ``stepper.state_to(states[t])`` gives the module's own hidden state after step t."""
    st, xs, state, unbatched = _prepare(module, inputs, h0)
    out = []
    for t in range(xs if isinstance(xs, int) else xs.shape[0]):
        state = st.step(state, None if isinstance(xs, int) else xs[t])
        out.append(state)
    states = torch.stack(out)
    return states[:, 0] if unbatched else states


def _in_dtype(module, dtype):
    """The resolved module itself, or a float copy of it in ``dtype`` (the user's module is never converted)."""
    if dtype is None:
        return module
    module = resolve_module(module)
    if not isinstance(module, nn.Module):
        return module
    p = next(iter(module.parameters()), None)
    return module if p is None or p.dtype == dtype else copy.deepcopy(module).to(dtype)


def spectrum(module, inputs, *, k: int | None = None, transient: int = 0, qr_every: int = 1, h0=None,
             Q0: torch.Tensor | None = None, seed: int = 0, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The first k Lyapunov exponents of the module driven by ``inputs`` (a measurement, detached).

    Args:
      module, inputs, h0: see the module docstring (layouts) and ``module_step``.
      k: number of exponents, 1..D (default all D).
      transient, qr_every: as for ``lyapunov.lyapunov_spectrum``.
      Q0: (D, k) orthonormal start; default a random one drawn from ``seed``.
      dtype: compute in this dtype on a copy of the module (default the module's own); torch.float64
        keeps strongly negative exponents exact, which float32 loses below about -1 per step.
    Returns:
      (B, k) exponents in nats per step, descending ((k,) for unbatched inputs).
    """
    module = _in_dtype(module, dtype)
    st, xs, state0, unbatched = _prepare(module, inputs, h0)
    k = _check_k(k, st.dim)
    with torch.no_grad():
        lam = lyapunov_spectrum(st.step, state0, xs, k, jacobian=st.tangent, transient=transient,
                                qr_every=qr_every, Q0=_q0(st.dim, k, seed, state0) if Q0 is None else Q0)
    return lam[0] if unbatched else lam


# ------------------------------------------------------------------------------------ diagnostics
def gradient_reach(norms, *, tol: float = 1e-3) -> float:
    """First horizon τ at which ‖∂L/∂h_{T−τ}‖ falls below ``tol`` × its value at τ = 0; inf when it
    never does within the window. ``norms``: (T + 1,) as from ``lyapunov.gradient_vs_horizon``."""
    norms = torch.as_tensor(norms, dtype=torch.float64)
    below = torch.nonzero(norms < tol * norms[0]).flatten()
    return float(below[0]) if len(below) else math.inf


def diagnostics(module, inputs, *, horizons=None, k: int | None = None, h0=None, tol: float = 1e-3,
                loss=None, seed: int = 0, dtype: torch.dtype | None = None) -> dict:
    """Long-term Jacobian and gradient-vs-horizon diagnostics of the module on ``inputs``.

    Args:
      horizons: increasing ints in 1..T (default 1, 2, 5, 10, 20, 50, ... up to T, and T).
      k: also report log σ_1/σ_k (default D).
      loss: ``flat state (B, D) -> (B,)`` backpropagated from the last step (default a fixed random
        projection of the state, drawn from ``seed``).
      dtype: as for ``spectrum``.
    Returns a dict (B = batch; leading B dropped for unbatched inputs):
      ``horizons`` list, ``log_sv`` (H, B, D) log singular values of ∂state_t/∂state_0, ``log_kappa``
      (H, B) = log σ_1/σ_D, ``log_kappa_k`` (H, B), ``grad_norms`` (T + 1, B) ‖∂L/∂state_{T−τ}‖,
      ``grad_reach`` list of B horizons where the gradient fell below ``tol`` of its start (inf: never).

    A singular long-term Jacobian is a result, not an error: where a one-step Jacobian maps a direction
    exactly to zero (a ReLU RNN's dead units: relu'(a) = 0 for a < 0, an exact zero row of D_t), σ_D = 0
    from then on (rank T_h <= rank D_s for every s <= h), so ``log_sv`` holds -inf in at least as many
    directions as the most zero rows of one step so far, and ``log_kappa`` is +inf (κ₂ = ∞). The zero
    rows are counted exactly on the tangents; the QR of the product alone would show a lost direction
    as a roundoff-sized σ (κ₂ ≈ 1/ε, e^18 in float32). ``log_kappa_k`` stays finite for k below the rank
    that survives; where every direction is lost (a zero product: all units dead at one step) both are
    +inf, a zero matrix being singular. The gradient norms and ``grad_reach`` are measured as for any
    module (the error signal lives in the directions that remain; it is exactly 0 behind a zero step).
    """
    module = _in_dtype(module, dtype)
    st, xs, state0, unbatched = _prepare(module, inputs, h0)
    steps = xs if isinstance(xs, int) else xs.shape[0]
    horizons = sorted({h for h in HORIZONS if h <= steps} | {steps}) if horizons is None else list(horizons)
    k = _check_k(k, st.dim)
    tangent, zero_rows = st.tangent or jvp_tangent(st.step), []

    def counted(state, x, new, Q):
        # a zero row of D_t Q (Q orthonormal) is a zero row of D_t: a direction the step maps exactly to 0 (a
        # dead ReLU unit), found exactly here, where the QR of T_t would only show it as a roundoff-sized σ_D
        out = tangent(state, x, new, Q)
        zero_rows.append((out == 0).all(-1).sum(-1).cpu())
        return out

    ltj = long_term_jacobian(st.step, state0.detach(), xs, horizons, jacobian=counted, k=k)
    # rank T_h <= min over steps s <= h of rank D_s: the last `lost` singular values of T_h are exactly 0
    lost = torch.stack(zero_rows).cummax(0).values[ltj["horizons"] - 1]              # (H, ...)
    log_sv = torch.where(torch.arange(st.dim) >= st.dim - lost[..., None],
                         torch.tensor(-math.inf, dtype=ltj["log_sv"].dtype), ltj["log_sv"])
    kappa = {"log_kappa": log_sv[..., 0] - log_sv[..., -1], "log_kappa_k": log_sv[..., 0] - log_sv[..., k - 1]}
    # every direction lost (a zero product: all units dead at one step): σ_1 = σ_D = 0, and log σ_1 − log σ_D
    # is -inf − -inf = NaN; a zero matrix is singular, κ₂ = ∞ by the usual convention
    zero = torch.isneginf(log_sv[..., 0])
    ltj.update(log_sv=log_sv, **{key: torch.where(zero, torch.tensor(math.inf, dtype=v.dtype), v)
                                 for key, v in kappa.items()})
    grads = gradient_vs_horizon(st.step, state0.detach(), xs, loss=loss,
                                generator=torch.Generator().manual_seed(seed))
    out = {"horizons": [int(h) for h in ltj["horizons"]], "log_sv": ltj["log_sv"],
           "log_kappa": ltj["log_kappa"], "log_kappa_k": ltj["log_kappa_k"], "grad_norms": grads.detach(),
           "grad_reach": [gradient_reach(grads[:, b], tol=tol) for b in range(grads.shape[1])]}
    if unbatched:
        out.update(log_sv=out["log_sv"][:, 0], log_kappa=out["log_kappa"][:, 0],
                   log_kappa_k=out["log_kappa_k"][:, 0], grad_norms=out["grad_norms"][:, 0])
    return out


# ------------------------------------------------------------------------------------ forecast
def _check_forecast(delay, tol) -> None:
    if isinstance(delay, bool) or not isinstance(delay, int) or delay < 1:
        raise ValueError(f"delay must be an integer >= 1, got {delay!r}")
    if isinstance(tol, bool) or not (isinstance(tol, (int, float)) and 0 < tol < 1):
        raise ValueError(f"tol must be strictly between 0 and 1, got {tol!r}")


def forecast(exponents_or_lambda1, delay: int, *, tol: float = 1e-3) -> dict:
    """Trainability forecast: how many steps back a gradient reaches before shrinking below ``tol``,
    ≈ log(tol)/λ_1 for λ_1 < 0 (``lyapunov.forecast_horizon``), against the task's delay.

    Args:
      exponents_or_lambda1: λ_1 as a number, or exponents (k,) / (B, k) sorted descending (λ_1 is
        the first one, averaged over B).
      delay: steps between an input and the target that needs it.
    Returns dict ``lambda1``, ``horizon`` (inf when λ_1 >= 0), ``delay``, ``tol``,
      ``flossing_recommended`` (bool) and ``verdict``, one line such as
      "this network can bridge ≈ 35 steps; your task needs 60: flossing recommended".
      λ_1 > ``EDGE_OF_CHAOS`` counts as chaotic (flossing recommended); 0 <= λ_1 <= EDGE_OF_CHAOS
      as the edge of chaos, where flossing puts a network (no flossing needed).
    """
    _check_forecast(delay, tol)
    lam = torch.as_tensor(exponents_or_lambda1, dtype=torch.float64).detach()
    if lam.numel() == 0:
        raise ValueError("no exponents given: need λ_1")
    lambda1 = float(lam.reshape(-1)[0] if lam.dim() <= 1 else lam[..., 0].mean())
    if math.isnan(lambda1):
        raise ValueError("λ_1 is not a number: the spectrum could not be measured")
    horizon = forecast_horizon(lambda1, tol=tol)
    if lambda1 > EDGE_OF_CHAOS:
        recommend = True
        verdict = (f"λ₁ = {lambda1:+.3f} > 0: chaotic dynamics, gradients may explode; your task needs {delay} "
                   "steps: flossing recommended")
    elif lambda1 >= 0:
        recommend = False
        verdict = (f"λ₁ = {lambda1:+.3f} ≈ 0: at the edge of chaos, gradients neither vanish nor explode over "
                   f"your task's {delay} steps: it should train without flossing")
    else:
        recommend = horizon < delay
        verdict = (f"this network can bridge ≈ {horizon:.0f} steps; your task needs {delay}: "
                   + ("flossing recommended" if recommend else "it should train without flossing"))
    return {"lambda1": lambda1, "horizon": horizon, "delay": delay, "tol": tol,
            "flossing_recommended": recommend, "verdict": verdict}


def forecast_model(model, delay: int, *, tol: float = 1e-3, steps: int = 1000, transient: int = 100,
                   seed: int = 0, channels: int = 1) -> dict:
    """``forecast`` for a freshly initialised network of our own (a ``models.ModelConfig``), λ_1
    measured on ``steps`` steps of random input bits after ``transient``. Adds ``exponents`` [λ_1]."""
    from .. import models as M
    from ..diagnostics import measure_spectrum

    M.validate_model(model)
    _check_forecast(delay, tol)
    if transient < 0 or steps <= transient:
        raise ValueError(f"steps ({steps}) must exceed the transient ({transient})")
    params = M.init_ensemble(model, channels, 1, [seed])
    lam = measure_spectrum(model, params, 1, steps=steps, transient=transient, seed=seed, channels=channels)[0]
    return {**forecast(float(lam[0]), delay, tol=tol), "exponents": lam.tolist()}
