"""The two reports the dashboard's "Your model" page shows for a loaded checkpoint, on random input bits:
``checkpoint_report`` (spectrum, forecast, long-term Jacobian and gradient reach) and
``floss_checkpoint`` (flossing in place, with the spectrum before and after).
"""
from __future__ import annotations

import math

import torch

from ..tasks import random_bits
from .measure import _check_forecast, diagnostics, forecast, spectrum, trajectory
from .regularizer import _check_floss, floss
from .stepper import _check_k, module_step


def bit_inputs(module, steps: int, *, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """Random input bits in the module's own layout ((T, B, C), or (B, T, C) with batch_first)."""
    st = module_step(module)
    x = random_bits((steps, batch, st.input_size), torch.Generator().manual_seed(seed),
                    next(iter(module.parameters())).dtype)
    return x.transpose(0, 1) if getattr(module, "batch_first", False) else x


def checkpoint_report(module, *, delay: int, k: int | None = None, steps: int = 500, transient: int = 100,
                      diag_steps: int = 200, tol: float = 1e-3, seed: int = 0) -> dict:
    """What the "Your model" page shows for a module driven by random input bits.

    The spectrum averages ``steps`` steps after a ``transient``; the diagnostics use the first
    ``diag_steps`` steps after the transient (the long-term Jacobian tracks all D directions).
    Returns ``exponents`` (k floats), ``forecast`` (see ``forecast``), ``horizons`` with
    ``log10_kappa`` (log10 σ_1/σ_D of the long-term Jacobian at each), ``grad_norms`` (diag_steps + 1
    floats, ‖∂L/∂h_{T−τ}‖ for τ = 0..) with ``grad_reach``, the state dimension ``dim`` and ``params``.
    """
    _check_forecast(delay, tol)
    for name, value, low in (("steps", steps, 1), ("transient", transient, 0), ("diag_steps", diag_steps, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    st = module_step(module)
    k = _check_k(k, st.dim)
    x = bit_inputs(module, transient + steps, seed=seed)
    lam = spectrum(module, x, k=k, transient=transient, seed=seed)[0]
    time_dim = 1 if getattr(module, "batch_first", False) else 0
    warm, rest = x.narrow(time_dim, 0, transient), x.narrow(time_dim, transient, min(diag_steps, steps))
    h0 = st.state_to(trajectory(module, warm)[-1]) if transient else None   # start on the attractor
    d = diagnostics(module, rest, h0=h0, tol=tol, seed=seed)
    return {"exponents": lam.tolist(), "forecast": forecast(lam, delay, tol=tol), "dim": st.dim,
            "params": sum(p.numel() for p in module.parameters()), "horizons": d["horizons"],
            "log10_kappa": (d["log_kappa"][:, 0] / math.log(10)).tolist(),
            "grad_norms": d["grad_norms"][:, 0].tolist(), "grad_reach": d["grad_reach"][0]}


def floss_checkpoint(module, *, k: int, steps: int, lr: float = 1e-3, window: int = 55, transient: int = 16,
                     measure_steps: int = 500, seed: int = 0, on_step=None) -> dict:
    """Floss ``module`` in place on fresh random bits (the paper's protocol: a window of 55 steps,
    16 transient, a fresh window each step). Returns the first k exponents measured on a long window
    (``measure_steps`` after a 100-step transient) ``before`` and ``after``, and ``floss``'s dict."""
    st = module_step(module)
    _check_k(k, st.dim)
    _check_floss(steps, lr)
    if isinstance(window, bool) or not isinstance(window, int) or not 0 <= transient < window:
        raise ValueError(f"transient must be in 0..{window - 1} (below the window), got {transient}")
    measure = bit_inputs(module, measure_steps + 100, seed=seed + 1)
    before = spectrum(module, measure, k=k, transient=100, seed=seed)[0]
    gen = torch.Generator().manual_seed(seed + 2)
    batch_first = getattr(module, "batch_first", False)

    def sampler(i):
        x = random_bits((window, 1, st.input_size), gen, measure.dtype)
        return x.transpose(0, 1) if batch_first else x

    result = floss(module, sampler, k=k, steps=steps, lr=lr, transient=transient, seed=seed, on_step=on_step)
    after = spectrum(module, measure, k=k, transient=100, seed=seed)[0]
    return {"before": before.tolist(), "after": after.tolist(), **result}
