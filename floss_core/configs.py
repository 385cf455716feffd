"""What a training run is configured by, apart from the model, task and schedule: no computation here.

* ``FlossConfig``: the flossing window and its optimisation; the named designs (``FLOSS_DESIGNS``:
  ``LAB_FLOSS``, the lab's default, and ``REFERENCE_FLOSS``, the paper's code), ``with_design`` /
  ``design_of`` to apply or recognise one;
* ``TrainConfig``: task training, evaluation and diagnostics;
* the choices these accept (``QR_CHOICES``, ``STATE_GRADIENTS``, ``DIAG_DTYPES``) and their checks
  (``validate_floss``, ``validate_train``: one-line ValueErrors);
* ``resolve_device`` (auto / cpu / cuda) and ``Cancelled``, what a run raises when asked to stop.

The model, task and schedule configs live beside their code (``models``, ``tasks``, ``schedules``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch


@dataclass(frozen=True)
class FlossConfig:
    k: int = 75                  # exponents flossed (1..state dimension)
    seq_len: int = 55            # flossing window length
    transient: int = 16          # window steps discarded before averaging
    qr_every: int = 1            # re-orthonormalise every this many steps
    batch: int = 1               # flossing sequences per step
    lr: float = 1e-3             # its own Adam, no clipping
    target: float = 0.0          # λ* the exponents are pushed to
    qr: str = "auto"             # auto: the rnn's fused window kernel (CholeskyQR, float64 Gram, hand-written
                                 # backward; floss_core/fastqr.py), Householder for gru/lstm |
                                 # householder (LAPACK, autograd) | cholesky (CholeskyQR2, autograd)
    through_states: bool = True  # differentiate through the state trajectory too (the reference does);
                                 # False: only through the one-step Jacobians (lower-variance gradient in
                                 # chaotic nets, where the trajectory term grows like e^{λ_1 t})
    state_grad: str | None = None  # full | auto | truncated | one_step | none; None: from through_states
                                   # (full / none). auto: per network, from its λ_1 on the check window (at the
                                   # phase's start and every stop_every steps): chaotic (> 0) truncated,
                                   # else the full gradient (the reference's)
    state_horizon: int = 10      # truncated: steps the trajectory gradient runs back (blocks of this many)
    lr_end: float | None = None  # cosine decay of the flossing lr from lr to lr_end over each phase (None: constant)
    clip: float = 0.0            # gradient norm clipped per member and parameter array inside flossing (0 = off)
    clip_chaotic_only: bool = False  # clip only the networks whose λ_1 on the check window (at the phase's start
                                 # and every stop_every steps) is > 0: clipping a stable net's gradient pushed
                                 # its λ_1 above 0 (the paper's g = 1 nets: +0.02), which costs task training
    stop_tol: float = 0.0        # stopping rule: a member stops flossing once max |λ_1..k| on a fresh long
                                 # window (stop_len steps, its own bits) is <= stop_tol (0 = off: the whole budget)
    stop_every: int = 50         # stopping rule: check every this many flossing steps
    stop_len: int = 500          # stopping rule: length of the check window (a fifth of it is transient)


# The paper's reference code, exactly: gradients through the states too, Adam at lr 1e-3, no clipping, a
# fixed step budget (the paper preset's "reference" flossing design).
REFERENCE_FLOSS = FlossConfig(k=75, seq_len=55, transient=16, lr=1e-3, through_states=True)
# The lab's default design, chosen by bench/floss_study.py (bench/RESULTS.md): see the README.
LAB_FLOSS = FlossConfig(k=75, seq_len=55, transient=16, lr=1e-3, state_grad="truncated", state_horizon=3,
                        clip=0.03, clip_chaotic_only=True, stop_tol=0.03, stop_every=50, stop_len=500)
LAB_BUDGET = 500
FLOSS_DESIGNS = {"lab": (LAB_FLOSS, LAB_BUDGET), "reference": (REFERENCE_FLOSS, 500)}   # name -> (config, budget)
# what a design is, as opposed to a size (k, window, transient, lr, QR stay the preset's or the user's)
DESIGN_FIELDS = ("through_states", "state_grad", "state_horizon", "lr_end", "clip", "clip_chaotic_only", "stop_tol",
                 "stop_every")


def with_design(floss: FlossConfig, design: str) -> FlossConfig:
    """``floss`` with the optimisation design ``design`` ('lab' or 'reference', see ``FLOSS_DESIGNS``)."""
    if design not in FLOSS_DESIGNS:
        raise ValueError(f"unknown flossing design {design!r}; choose one of {', '.join(FLOSS_DESIGNS)}")
    base = FLOSS_DESIGNS[design][0]
    return replace(floss, **{f: getattr(base, f) for f in DESIGN_FIELDS})


def design_of(floss: FlossConfig) -> str:
    """'lab', 'reference' or 'custom': which named design ``floss`` follows."""
    for name in FLOSS_DESIGNS:
        if with_design(floss, name) == floss:
            return name
    return "custom"


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 3001            # task training steps, a fresh batch each
    lr: float = 1e-3             # Adam (betas 0.9/0.999, eps 1e-8)
    clip: float = 0.03           # gradient norm clipped per parameter array (0 = off)
    eval_every: int = 100        # evaluate on a fresh test batch every M steps (and at the end)
    eval_batch: int = 64         # sequences per test batch
    success_acc: float = 0.95    # success when test accuracy >= this (csv tasks: final skill >= task.skill_margin)
    log_every: int = 10          # record training loss / gradient norm every M steps
    monitor_k: int = 8           # exponents measured cheaply at each evaluation (λ_1 over training)
    diag_len: int = 300          # window of the spectrum / long-term-Jacobian snapshots
    diag_transient: int = 50     # transient of the spectrum snapshots
    diagnostics: bool = True     # full spectra, κ₂ and gradient-vs-horizon at phase boundaries
    diag_dtype: str = "float64"  # of those snapshots: float64 (default) keeps the bottom of the spectrum and
                                 # κ₂ exact (float32 is off by up to 2.7 per step there at g = 4); the cheap
                                 # λ_1..monitor_k monitor stays float32, where the top exponents are exact
    stop_when_solved: bool = False  # a network that met the success criterion (bit tasks: an evaluation at
                                 # success_acc) stops there: no more training, flossing or snapshots but a
                                 # final one; its final numbers are those at convergence, and the run ends
                                 # when every network is solved or diverged. Success and convergence steps
                                 # are the same as without it; csv tasks (judged at the final evaluation)
                                 # train the whole budget either way


QR_CHOICES = ("auto", "householder", "cholesky")
STATE_GRADIENTS = ("full", "auto", "truncated", "one_step", "none")
DIAG_DTYPES = {"float64": torch.float64, "float32": torch.float32}   # TrainConfig.diag_dtype -> dtype


def validate_floss(f: FlossConfig, d: int) -> None:
    if not 1 <= f.k <= d:
        raise ValueError(f"k must be in 1..{d} (the state dimension), got {f.k}")
    if f.qr_every < 1:
        raise ValueError(f"qr_every must be >= 1, got {f.qr_every}")
    if not 0 <= f.transient < f.seq_len:
        raise ValueError(f"floss transient must be in 0..{f.seq_len - 1} (below the window length), got {f.transient}")
    if f.batch < 1:
        raise ValueError(f"floss batch must be >= 1, got {f.batch}")
    if not f.lr > 0:
        raise ValueError(f"floss lr must be > 0, got {f.lr}")
    if f.qr not in QR_CHOICES:
        raise ValueError(f"unknown qr {f.qr!r}; choose one of {', '.join(QR_CHOICES)}")
    if f.state_grad is not None and f.state_grad not in STATE_GRADIENTS:
        raise ValueError(f"unknown state_grad {f.state_grad!r}; choose one of {', '.join(STATE_GRADIENTS)}")
    if f.state_horizon < 1:
        raise ValueError(f"floss state_horizon must be >= 1, got {f.state_horizon}")
    if f.lr_end is not None and not 0 < f.lr_end <= f.lr:
        raise ValueError(f"floss lr_end must be in (0, lr={f.lr}], got {f.lr_end}")
    if not f.clip >= 0:
        raise ValueError(f"floss clip must be >= 0, got {f.clip}")
    if not f.stop_tol >= 0:
        raise ValueError(f"floss stop_tol must be >= 0, got {f.stop_tol}")
    if f.stop_every < 1:
        raise ValueError(f"floss stop_every must be >= 1, got {f.stop_every}")
    if f.stop_len < 10:
        raise ValueError(f"floss stop_len must be >= 10, got {f.stop_len}")


def validate_train(t: TrainConfig) -> None:
    if t.steps < 1:
        raise ValueError(f"steps must be >= 1, got {t.steps}")
    for name in ("eval_every", "eval_batch", "log_every", "monitor_k"):
        if getattr(t, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(t, name)}")
    if not t.lr > 0:
        raise ValueError(f"lr must be > 0, got {t.lr}")
    if not t.clip >= 0:
        raise ValueError(f"clip must be >= 0, got {t.clip}")
    if not 0 < t.success_acc <= 1:
        raise ValueError(f"success_acc must be in (0, 1], got {t.success_acc}")
    if not 0 <= t.diag_transient < t.diag_len:
        raise ValueError(f"diag_transient must be in 0..{t.diag_len - 1}, got {t.diag_transient}")
    if t.diag_dtype not in DIAG_DTYPES:
        raise ValueError(f"unknown diag_dtype {t.diag_dtype!r}; choose one of {', '.join(DIAG_DTYPES)}")


class Cancelled(Exception):
    """Raised when ``should_stop()`` returns True; nothing of the ensemble is returned."""


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA device is available; use auto or cpu")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; choose one of auto, cpu, cuda")
    return torch.device(device)
