"""Evaluation and diagnostics of an ensemble: plain functions of (model config, parameters, inputs).

Nothing here trains or keeps state; the training loop calls these and records what they return:

* ``task_forward``: one batch's loss per member and its scored outputs (the training step uses it too);
* ``evaluate``: test loss and test score (accuracy, or R² for csv tasks) per member, ``score_metric``
  its record name and success bar;
* ``top_exponents``: the first k exponents on a given window, no gradient (the cheap λ_1 monitor at each
  evaluation, and the flossing stopping rule's check);
* ``snapshot``: the full spectrum, the long-term Jacobian's singular values / κ₂ per horizon and the
  gradient-vs-horizon curve, in ``configs.DIAG_DTYPES[...]`` (at phase boundaries);
* ``measure_spectrum``: long-window exponents driven by fresh random bits, the honest check of what
  flossing did beyond the window it optimises.
"""
from __future__ import annotations

import torch

from . import models as M
from . import tasks as T
from .lyapunov import gradient_vs_horizon, long_term_jacobian, lyapunov_spectrum

DIAG_QR = "cholesky64"   # diagnostics need no gradient: the cheapest forward QR (tests compare it with Householder)
HORIZONS = (1, 2, 5, 10, 20, 50, 100, 200, 300, 500, 1000)   # of the long-term-Jacobian snapshots (and the window)


def task_forward(model: M.ModelConfig, params: dict, batch: T.Batch, kind: str):
    """Loss per member (E,) and the scored outputs of one batch: inputs (T, E, B, C). Uses the
    architecture's fused drive + recurrence + readout where it has one (``Arch.readouts``)."""
    x0 = M.initial_state(params, batch.inputs.shape[2])
    fused = M.ARCHS[model.arch].readouts
    if fused is not None:
        out = fused(params, x0, batch.inputs)[batch.mask]
    else:
        out = M.readout(model, params, M.run(model, params, x0, batch.inputs)[batch.mask])
    targets = batch.targets[batch.mask]
    scored = torch.ones(out.shape[0], dtype=torch.bool, device=out.device)
    return T.task_loss(out, targets, scored, kind), out, targets, scored


def score_metric(task: T.TaskConfig, success_acc: float) -> tuple[str, float]:
    """The test score's record name and its success bar, as the task's entry says: ('test_acc',
    success_acc) for the bit tasks, ('test_r2', task.r2_threshold) for csv forecasting."""
    entry = T.task_entry(task.name)
    return entry.score_column, entry.threshold(task, success_acc)


def evaluate(model: M.ModelConfig, task: T.TaskConfig, params: dict, batch: T.Batch) -> tuple:
    """Test loss and test score (the task's: accuracy, or R² for csv) of every member on ``batch``:
    (E,), (E,)."""
    entry = T.task_entry(task.name)
    with torch.no_grad():
        p = {k: v.detach() for k, v in params.items()}
        loss, out, targets, scored = task_forward(model, p, batch, entry.loss)
        score = entry.score(out, targets, scored)
    return loss, score


def top_exponents(model: M.ModelConfig, params: dict, inputs: torch.Tensor, k: int, *,
                  transient: int) -> torch.Tensor:
    """The first k exponents (E, k) of every member on the window ``inputs`` (T, E, 1, C), from its first
    initial-state column and the first k axes, no gradient."""
    p = {key: v.detach() for key, v in params.items()}
    with torch.no_grad():
        return lyapunov_spectrum(M.step_fn(model, p), p["h0"][:, :1], M.drive(model, p, inputs), k,
                                 jacobian=M.jacobian_fn(model, p), transient=transient,
                                 Q0=torch.eye(M.state_dim(model), k, device=inputs.device), qr=DIAG_QR)[:, 0]


def snapshot(model: M.ModelConfig, params: dict, inputs: torch.Tensor, *, transient: int, k: int,
             dtype: torch.dtype) -> dict:
    """The diagnostics of every member on the window ``inputs`` (T, E, 1, C), computed in ``dtype``:
    ``exponents`` (E, D), the full spectrum; ``horizons``, a list of window lengths h; ``log_sv`` (H, E, k),
    ``log_kappa`` and ``log_kappa_k`` (H, E) of the long-term Jacobian over each horizon (k of its
    singular values); ``grad_norm`` (T + 1, E), the readout gradient's norm h steps back."""
    d = M.state_dim(model)
    with torch.no_grad():
        p = {key: v.detach().to(dtype) for key, v in params.items()}
        x0 = p["h0"][:, :1]
        u = M.drive(model, p, inputs.to(dtype))
        step_map, jac = M.step_fn(model, p), M.jacobian_fn(model, p)
        lam = lyapunov_spectrum(step_map, x0, u, d, jacobian=jac, transient=transient,
                                Q0=torch.eye(d, device=inputs.device), qr=DIAG_QR)[:, 0]
        horizons = sorted({h for h in HORIZONS if h <= len(u)} | {len(u)})
        ltj = long_term_jacobian(step_map, x0, u, horizons, jacobian=jac, k=min(k, d), qr=DIAG_QR)
    grads = gradient_vs_horizon(step_map, x0, u, loss=lambda s: M.readout(model, p, s).sum(-1))[:, :, 0]
    return {"exponents": lam, "horizons": horizons, "log_sv": ltj["log_sv"][:, :, 0],
            "log_kappa": ltj["log_kappa"][:, :, 0], "log_kappa_k": ltj["log_kappa_k"][:, :, 0], "grad_norm": grads}


def measure_spectrum(model: M.ModelConfig, params: dict, k: int, *, steps: int = 1000, transient: int = 100,
                     seed: int = 0, inputs: str = "bits", channels: int = 1,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Long-window exponents (E, k) of an ensemble driven by random bits (or no input), from the first
    initial-state column: the honest check of what flossing did beyond the window it optimises.
    ``dtype`` float64 keeps strongly negative exponents exact (float32 loses them below about -1)."""
    p = {key: v.detach().to(dtype) for key, v in params.items()}
    e, dev = p["h0"].shape[0], p["h0"].device
    gen = torch.Generator().manual_seed(seed)
    x = T.random_bits((steps, 1, 1, channels), gen, dtype) if inputs == "bits" \
        else torch.zeros(steps, 1, 1, channels, dtype=dtype)
    u = M.drive(model, p, x.expand(steps, e, 1, channels).to(dev))
    with torch.no_grad():
        return lyapunov_spectrum(M.step_fn(model, p), p["h0"][:, :1], u, k, jacobian=M.jacobian_fn(model, p),
                                 transient=transient, generator=gen, qr=DIAG_QR)[:, 0]
