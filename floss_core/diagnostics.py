"""Evaluation and diagnostics of an ensemble: plain functions of (model config, parameters, inputs).

Nothing here trains or keeps state; the training loop calls these and records what they return:

* ``task_forward``: one batch's loss per member and its scored outputs (the training step uses it too);
* ``evaluate``: test loss and test score (accuracy, or R² for csv tasks) per member; ``judge`` what an
  evaluation logs and who passes (csv: the skill over the better naive baseline, ``baseline_scores``,
  on the same test windows), ``score_metric`` the success metric and its bar, ``convergence_step`` the
  rule (first or final evaluation), ``run_facts`` what a run records besides (baselines, rule, gaps);
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
    """The evaluated metric a run's success is judged on and its bar, as the task's entry says:
    ('test_acc', success_acc) for the bit tasks, ('test_skill', task.skill_margin) for csv forecasting."""
    entry = T.task_entry(task.name)
    return entry.metric, entry.threshold(task, success_acc)


# ---------------------------------------------------------------- success: the score, the baselines, the rule

def skill(mse, baseline_mse):
    """Skill score 1 - MSE / MSE_baseline: 1 a perfect forecast, 0 as good as the baseline, below 0 worse."""
    return 1 - mse / baseline_mse


def baseline_scores(task: T.TaskConfig, n: int) -> dict:
    """The task's baselines scored like the network on the same test windows (``Task.test_draw`` with at
    most ``n`` windows, the scored steps t >= d): '<name>_mse' (the mean squared error over scored steps,
    windows and channels, i.e. the network's test_loss) and '<name>_r2' (``tasks.r2_score``) for each
    baseline, and 'baseline_mse' / 'baseline_r2' / 'baseline' of the better (lower-MSE) one. Floats, and
    the better one's name; {} for a task without baselines."""
    entry = T.task_entry(task.name)
    if entry.baselines is None:
        return {}
    batch = T.make_test_batch(task, [None], n)                          # (T, 1, N, C): one "member"
    out, best = {}, None
    for name, forecast in entry.baselines(task, n).items():
        pred = forecast[:, None]
        out[f"{name}_mse"] = float(T.task_loss(pred, batch.targets, batch.mask, "mse")[0])
        out[f"{name}_r2"] = float(T.r2_score(pred, batch.targets, batch.mask)[0])
        if best is None or out[f"{name}_mse"] < out[f"{best}_mse"]:
            best = name
    out.update(baseline=best, baseline_mse=out[f"{best}_mse"], baseline_r2=out[f"{best}_r2"])
    return out


def success_rule(task: T.TaskConfig, success_acc: float, n: int) -> str:
    """The success rule of a run in words, with its numbers (recorded in a csv run's final)."""
    entry = T.task_entry(task.name)
    metric, bar = score_metric(task, success_acc)
    if entry.baselines is None:
        return f"success at the first evaluation with {metric} >= {bar:g}"
    n_windows = entry.test_draw(task, n).shape[1]
    persistence = f"persistence (the value {task.delay} step{'s' if task.delay != 1 else ''} before the target)"
    baseline = (f"the baseline, {persistence}" if task.period is None else
                f"the better baseline of {persistence} and seasonal persistence (the value "
                f"{T.seasonal_lag(task.period, task.delay)} steps before it, period {task.period})")
    return (f"success when the final evaluation's test_skill >= {bar:g}; test_skill = 1 - MSE / MSE of "
            f"{baseline}, on the same {n_windows} test windows; convergence_step: the first evaluation "
            f"from which every evaluation reached {bar:g}")


def judge(task: T.TaskConfig, loss: torch.Tensor, score: torch.Tensor, success_acc: float, n: int):
    """One evaluation's verdict per member, from its test loss and score (E,) on ``tasks.make_test_batch``
    with ``n`` windows: (logged, recorded, passed). ``logged``: {metric: (E,)} for the training curves and
    the final record (the score, and for csv 'test_skill' against ``baseline_scores``); ``recorded``:
    {name: (E,)} for the final record only (csv: 'test_mse'); ``passed``: (E,) bool, the success metric
    at or above its bar (``score_metric``)."""
    entry = T.task_entry(task.name)
    logged, recorded = {entry.score_column: score}, {}
    if entry.baselines is not None:
        logged["test_skill"] = skill(loss, baseline_scores(task, n)["baseline_mse"])
        recorded["test_mse"] = loss
    metric, bar = score_metric(task, success_acc)
    return logged, recorded, logged[metric] >= bar


def run_facts(task: T.TaskConfig, success_acc: float, n: int) -> dict:
    """What every run of ``task`` records in its final besides its own numbers: for csv the baselines'
    scores (``baseline_scores``), the success rule in words, and the gaps handled (values filled, rows
    dropped); {} for the bit tasks."""
    entry = T.task_entry(task.name)
    facts = dict(entry.facts(task)) if entry.facts is not None else {}
    if entry.baselines is not None:
        facts.update(baseline_scores(task, n), success_rule=success_rule(task, success_acc, n))
    return facts


def convergence_step(task: T.TaskConfig, previous: int | None, passed: bool, step: int) -> int | None:
    """A run's convergence step after an evaluation at ``step`` that ``passed`` (or not). Judged 'first'
    (bit tasks): the first evaluation that passed, kept. Judged 'final' (csv): the first evaluation from
    which every evaluation passed, None after one that failed; the final evaluation comes last, so such a
    run succeeds exactly when its final evaluation passes."""
    if passed:
        return step if previous is None else previous
    return None if T.task_entry(task.name).judged == "final" else previous


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
        horizons = sorted({h for h in HORIZONS if h <= len(u)} | {len(u)})
        # one pass over the window's full tangent space gives the long-term Jacobian and the spectrum (the
        # same QRs as lyapunov_spectrum's from Q0 = I: the same numbers, half the work of two passes)
        ltj = long_term_jacobian(step_map, x0, u, horizons, jacobian=jac, k=min(k, d), qr=DIAG_QR,
                                 transient=transient)
        lam = ltj["exponents"][:, 0]
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
