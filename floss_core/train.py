"""The one training loop: task training of an ensemble of E networks, with flossing phases per schedule.

Reads top to bottom like the protocol (Engelken 2023, reference code): initialise E networks from E
seeds; optionally floss before training; then train on a fresh batch per step with per-array
gradient clipping and Adam, flossing in separate phases (or, for ``joint``, adding
``weight * flossing_loss`` to the task loss where the reader can see it). Members are independent:
every loss is per member and summed, the optimiser keeps per-member state, so an ensemble of E
seeds gives exactly the numbers of E separate runs. A member whose loss or exponents turn NaN/inf is
recorded as diverged (step and reason) and frozen; the others go on.
"""
from __future__ import annotations

import math
import platform
import time
from dataclasses import asdict, dataclass, field, replace

import torch

from . import __version__  # stored with every run
from . import models as M
from . import native
from . import schedules as S
from . import tasks as T
from .fastqr import rnn_lyapunov_spectrum
from .flossing import flossing_loss
from .lyapunov import gradient_vs_horizon, long_term_jacobian, lyapunov_spectrum, random_orthonormal


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
    success_acc: float = 0.95    # success when test accuracy >= this (csv tasks: test R² >= r2_threshold)
    log_every: int = 10          # record training loss / gradient norm every M steps
    monitor_k: int = 8           # exponents measured cheaply at each evaluation (λ_1 over training)
    diag_len: int = 300          # window of the spectrum / long-term-Jacobian snapshots
    diag_transient: int = 50     # transient of the spectrum snapshots
    diagnostics: bool = True     # full spectra, κ₂ and gradient-vs-horizon at phase boundaries
    diag_dtype: str = "float64"  # of those snapshots: float64 (default) keeps the bottom of the spectrum and
                                 # κ₂ exact (float32 is off by up to 2.7 per step there at g = 4); the cheap
                                 # λ_1..monitor_k monitor stays float32, where the top exponents are exact


@dataclass
class _Member:
    """Per-member bookkeeping (plain lists, turned into a run record at the end)."""
    seed: int
    diverged_step: int | None = None
    reason: str | None = None
    convergence_step: int | None = None
    metrics: list = field(default_factory=list)
    spectra: list = field(default_factory=list)
    jacobian: list = field(default_factory=list)
    final: dict = field(default_factory=dict)


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


def versions() -> dict:
    import numpy
    return {"floss_core": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version(), "time_loop": native.status()}


QR_CHOICES = ("auto", "householder", "cholesky")
DIAG_DTYPES = {"float64": torch.float64, "float32": torch.float32}
DIAG_QR = "cholesky64"   # diagnostics need no gradient: the cheapest forward QR (tests compare it with Householder)


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


# ------------------------------------------------------------------------------ the optimiser
class EnsembleAdam:
    """Adam (Kingma & Ba) over stacked ensemble parameters with per-member step counts.

    Exactly ``torch.optim.Adam`` for each member separately (tests check this), plus a per-member
    ``active`` mask: inactive members (diverged, or not flossing in an adaptive phase) are not
    touched at all, not even by momentum, so they stay what separate runs would be."""

    def __init__(self, params: list[torch.Tensor], *, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        e = params[0].shape[0]
        self.t = torch.zeros(e, dtype=torch.float64, device=params[0].device)
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> None:
        b1, b2 = self.betas
        self.t += active.to(self.t.dtype)
        bc1 = (1 - b1 ** self.t).clamp_min(1e-300)
        bc2 = (1 - b2 ** self.t).clamp_min(1e-300)
        every = bool(active.all())      # the usual case: no masking, in place (the same numbers)
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            shape = (-1,) + (1,) * (p.dim() - 1)
            a = active.view(shape)
            g = p.grad
            if every:
                m.mul_(b1).add_((1 - b1) * g)
                v.mul_(b2).add_((1 - b2) * g * g)
            else:
                m.copy_(torch.where(a, b1 * m + (1 - b1) * g, m))
                v.copy_(torch.where(a, b2 * v + (1 - b2) * g * g, v))
            denom = (v / bc2.to(p.dtype).view(shape)).sqrt() + self.eps
            update = self.lr * (m / bc1.to(p.dtype).view(shape)) / denom
            if every:
                p.sub_(update)
            else:
                p.copy_(torch.where(a, p - update, p))

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None


@torch.no_grad()
def clip_per_member(params: list[torch.Tensor], max_norm) -> torch.Tensor:
    """Clip each parameter array of each member to norm ``max_norm`` on its own (the reference's
    per-array clipping, as torch.nn.utils.clip_grad_norm_ applied to one array of one network);
    ``max_norm`` a float (0: no clipping) or an (E,) tensor, one bound per member (inf: none).
    Returns the members' total gradient norms before clipping, (E,)."""
    total = 0.0
    for p in params:
        if p.grad is None:
            continue
        norm = p.grad.reshape(p.shape[0], -1).norm(dim=1)          # (E,)
        total = total + norm ** 2
        if isinstance(max_norm, torch.Tensor) or max_norm > 0:      # a tensor: one bound per member (inf: none)
            coef = (max_norm / (norm + 1e-6)).clamp(max=1.0)
            p.grad.mul_(coef.view((-1,) + (1,) * (p.dim() - 1)))
    return torch.sqrt(torch.as_tensor(total))


# ------------------------------------------------------------------------------ building blocks
def member_generators(seeds, stream: int) -> list[torch.Generator]:
    """One generator per member and purpose (1 train data, 2 test data, 3 flossing data, 4 Q0,
    5 diagnostics, 6 the flossing stopping rule's check windows): the same for every schedule, so
    schedules see the same data."""
    return [torch.Generator().manual_seed(int(s) * 1_000_003 + stream) for s in seeds]


def member_q0(seeds, d: int, k: int, device) -> torch.Tensor:
    """(E, D, k): each member's fixed orthonormal start for its flossing windows (the reference
    reuses one random start every step), drawn from its own seed."""
    return torch.stack([random_orthonormal(d, k, generator=g, device=device) for g in member_generators(seeds, 4)])


def _bits(generators, length: int, batch: int, channels: int, device) -> torch.Tensor:
    """Driving input bits for flossing / diagnostics windows: (L, E, b, C)."""
    x = torch.stack([torch.randint(0, 2, (length, batch, channels), generator=g) for g in generators], 1)
    return x.to(device=device, dtype=torch.float32)


STATE_GRADIENTS = ("full", "auto", "truncated", "one_step", "none")


def state_gradient(floss: FlossConfig) -> str:
    """How a flossing gradient treats the state trajectory: 'full' (through every state, the reference),
    'truncated' (state_horizon steps back), 'auto' (truncated for chaotic networks, full otherwise),
    'one_step' (each state's direct dependence on the weights only) or 'none' (the Jacobians only)."""
    if floss.state_grad is not None:
        return floss.state_grad
    return "full" if floss.through_states else "none"


def flossing_exponents(model: M.ModelConfig, params: dict, floss: FlossConfig, inputs: torch.Tensor,
                       Q0: torch.Tensor, *, fused: bool = True, chaotic: torch.Tensor | None = None) -> torch.Tensor:
    """Exponents of one flossing window per member: inputs (L, E, b, C), Q0 (E, D, k) -> (E, b, k).

    Starts from the first initial-state column (detached, as in the reference code). ``fused``
    computes the state trajectory with the model's sequence kernel first (the tangent loop then only
    propagates Q); False steps state and tangent together (the reference path). ``chaotic`` (E,) bool:
    for state_grad 'auto', the members whose trajectory gradient is truncated (default: those whose
    window λ̂_1 is > 0)."""
    e, b = inputs.shape[1], inputs.shape[2]
    x0 = params["h0"][:, :1].detach().expand(e, b, -1)
    u = M.drive(model, params, inputs)
    mode = state_gradient(floss)
    states = M.run_driven(model, params, x0, u, fused=fused) if fused or mode != "full" else None
    if mode == "none":
        states = states.detach()
    elif mode in ("truncated", "auto"):
        # the full trajectory gradient within blocks of state_horizon steps, each block starting from the
        # previous block's detached end: non-chaotic nets keep almost all of it (it decays anyway), chaotic
        # ones at most e^{λ_1 · state_horizon} of the exploding part. 'auto' detaches only for the members
        # that are chaotic (floss_phase: by their long-window λ_1; else this window's λ̂_1 > 0): a stable
        # member keeps the whole trajectory gradient
        keep = None
        if mode == "auto" and chaotic is not None:
            keep = (~chaotic)[:, None, None]                                # (E, 1, 1)
        elif mode == "auto":
            with torch.no_grad():
                lam1 = lyapunov_spectrum(M.step_fn(model, params), x0, u, 1, jacobian=M.jacobian_fn(model, params),
                                         transient=floss.transient, Q0=Q0[:, None, :, :1], qr=DIAG_QR,
                                         trajectory=states)[..., 0]
            keep = (lam1 <= 0)[..., None]                                   # (E, b, 1)
        h, blocks, start = floss.state_horizon, [], x0
        for t0 in range(0, u.shape[0], h):
            blocks.append(M.run_driven(model, params, start, u[t0:t0 + h], fused=fused))
            end = blocks[-1][-1]
            start = end.detach() if keep is None else torch.where(keep, end, end.detach())
        states = torch.cat(blocks)
    elif mode == "one_step":
        # each state's direct dependence on the weights, x_t = step(detached x_{t-1}, u_t): the first-order
        # effect of the weights on where the trajectory runs (its saturation), without the chaotic
        # propagation e^{λ_1 t} that the full trajectory gradient carries
        prev = torch.cat([x0[None], states[:-1]]).detach()
        step = M.step_fn(model, params)
        states = torch.stack([step(prev[t], u[t]) for t in range(u.shape[0])]) if model.arch != "rnn" else \
            M.member_linear(torch.tanh(prev), params["J"], None) + u
    if fused and floss.qr == "auto" and model.arch == "rnn":
        # the window kernel: states before each step, x_0 .. x_{L-1}; the same exponents (tests compare)
        return rnn_lyapunov_spectrum(torch.cat([x0[None], states[:-1]]), params["J"], Q0[:, None],
                                     transient=floss.transient, qr_every=floss.qr_every)
    return lyapunov_spectrum(M.step_fn(model, params), x0, u, floss.k, jacobian=M.jacobian_fn(model, params),
                             transient=floss.transient, qr_every=floss.qr_every, Q0=Q0[:, None],
                             qr="householder" if floss.qr == "auto" else floss.qr,
                             trajectory=states)


def floss_lr(floss: FlossConfig, i: int, n_steps: int) -> float:
    """The flossing learning rate at step i of an n_steps phase: constant, or a cosine from lr to lr_end."""
    if floss.lr_end is None or n_steps <= 1:
        return floss.lr
    return floss.lr_end + 0.5 * (floss.lr - floss.lr_end) * (1 + math.cos(math.pi * i / (n_steps - 1)))


def stop_check_exponents(model: M.ModelConfig, params: dict, floss: FlossConfig, generators, channels: int,
                         device) -> torch.Tensor:
    """The stopping rule's measurement: the first k exponents (E, k) of each member on a fresh window of
    ``stop_len`` steps (its own bits, a fifth of them transient), no gradient; never a flossing window."""
    p = {key: v.detach() for key, v in params.items()}
    x = _bits(generators, floss.stop_len, 1, channels, device)
    with torch.no_grad():
        return lyapunov_spectrum(M.step_fn(model, p), p["h0"][:, :1], M.drive(model, p, x), floss.k,
                                 jacobian=M.jacobian_fn(model, p), transient=floss.stop_len // 5,
                                 Q0=torch.eye(M.state_dim(model), floss.k, device=device), qr=DIAG_QR)[:, 0]


def floss_phase(model: M.ModelConfig, params: dict, floss: FlossConfig, n_steps: int, *, opt: EnsembleAdam,
                generators, Q0: torch.Tensor, channels: int, active: torch.Tensor, on_step=None,
                check_generators=None) -> list:
    """Up to ``n_steps`` flossing steps for the members where ``active`` is True: loss = flossing_loss(λ)
    per member, summed. Only those members are computed (a differentiable slice of the stacked
    parameters) and only their flossing data streams advance, so a member's numbers do not depend
    on who else is in the ensemble. A member whose exponents turn non-finite drops out of the phase.

    The step's learning rate follows ``floss_lr``; with ``floss.clip`` each member's gradient is clipped
    per parameter array (with ``clip_chaotic_only`` only the members that are chaotic); with
    ``floss.stop_tol`` > 0 every ``stop_every`` steps each flossing member's first k exponents are measured
    on a fresh long window (bits from ``check_generators``, one per member, never the flossing windows'
    stream) and a member within the tolerance stops flossing. The same measurement (also at step 0 where
    'auto' or clip_chaotic_only need it) says which members are chaotic: λ_1 > 0.

    Returns per-step (E,) losses (NaN for members not flossing). ``on_step(i, loss (E,), bad (E,))``
    is called after each step, ``bad`` marking members whose exponents were not finite."""
    auto = state_gradient(floss) == "auto"
    regime = auto or (floss.clip_chaotic_only and floss.clip > 0)      # who is chaotic matters
    if (floss.stop_tol > 0 or regime) and check_generators is None:
        raise ValueError("the stopping rule (stop_tol > 0), state_grad 'auto' and clip_chaotic_only need "
                         "check_generators, one per member")
    live = active.clone()
    chaotic = torch.zeros_like(live)
    history = []
    for i in range(n_steps):
        if i % floss.stop_every == 0 and ((floss.stop_tol > 0 and i > 0) or regime):
            # one long-window measurement per member serves both: the stopping rule, and the regime
            # (λ_1 > 0: chaotic) that 'auto' and clip_chaotic_only act on
            idx = torch.nonzero(live).flatten()
            lam = stop_check_exponents(model, {k: v[idx] for k, v in params.items()}, floss,
                                       [check_generators[j] for j in idx.tolist()], channels, Q0.device)
            chaotic[idx] = lam[:, 0] > 0
            if floss.stop_tol > 0 and i > 0:
                live[idx[lam.abs().amax(dim=1) <= floss.stop_tol]] = False
        idx = torch.nonzero(live).flatten()
        if idx.numel() == 0:
            break
        sub = {k: v[idx] for k, v in params.items()}
        inputs = _bits([generators[j] for j in idx.tolist()], floss.seq_len, floss.batch, channels, Q0.device)
        lam = flossing_exponents(model, sub, floss, inputs, Q0[idx], chaotic=chaotic[idx] if auto else None)
        loss = flossing_loss(lam, target=floss.target).mean(dim=1)       # (E_sub,)
        ok = torch.isfinite(lam).flatten(1).all(dim=1)
        opt.zero_grad()
        torch.where(ok, loss, torch.zeros_like(loss)).sum().backward()
        if floss.clip_chaotic_only and floss.clip > 0:      # only the chaotic members are clipped
            clip_per_member(opt.params, torch.where(chaotic, floss.clip, math.inf))
        elif floss.clip > 0:
            clip_per_member(opt.params, floss.clip)
        step_mask = torch.zeros_like(live)
        step_mask[idx[ok]] = True
        opt.lr = floss_lr(floss, i, n_steps)
        opt.step(step_mask)
        full = torch.full(live.shape, math.nan, device=loss.device)
        full[idx] = loss.detach()
        bad = torch.zeros_like(live)
        bad[idx[~ok]] = True
        live &= ~bad
        history.append(full)
        if on_step:
            on_step(i, full, bad)
    return history


def task_forward(model: M.ModelConfig, params: dict, batch: T.Batch, kind: str):
    """Loss per member (E,) and the scored outputs of one batch: inputs (T, E, B, C)."""
    x0 = M.initial_state(params, batch.inputs.shape[2])
    if model.arch == "rnn":       # drive, recurrence and readout fused (one matmul per step)
        out = M.rnn_readouts(params, x0, batch.inputs)[batch.mask]
    else:
        out = M.readout(model, params, M.run(model, params, x0, batch.inputs)[batch.mask])
    targets = batch.targets[batch.mask]
    scored = torch.ones(out.shape[0], dtype=torch.bool, device=out.device)
    return T.task_loss(out, targets, scored, kind), out, targets, scored


# ------------------------------------------------------------------------------ the loop
def _groups(schedules: list, counts) -> dict:
    """{n_steps: member mask} for the members whose schedule asks for n_steps > 0 flossing steps."""
    out: dict = {}
    for i, n in enumerate(counts):
        if n > 0:
            out.setdefault(n, []).append(i)
    return out


def work_units(schedules, steps: int) -> int:
    """Progress units of one ensemble: training steps plus the flossing steps it runs in sequence
    (phases of equal length for several schedules run together; adaptive counts its maximum)."""
    total = steps + sum(_groups(schedules, [S.pre_steps(s) for s in schedules]))
    for t in sorted({t for s in schedules for t in s.inter_at if t < steps}):
        total += sum(_groups(schedules, [S.inter_steps(s, t) for s in schedules]))
    return total + max(S.planned_floss_steps(s, steps) if s.name == "adaptive" else 0 for s in schedules)


def train(model: M.ModelConfig, task: T.TaskConfig, train_cfg: TrainConfig, floss: FlossConfig,
          schedule, seeds, *, members: bool = False, device: str = "cpu", on_progress=None,
          should_stop=None) -> list[dict]:
    """Train one ensemble: every seed under every schedule, E = len(schedules) × len(seeds) networks.

    ``schedule`` is one Schedule or a sequence of them. All schedules start from the same initial
    weights and see the same task data (both derive from the seed alone), so they differ only in
    flossing; a flossing phase computes only the members whose schedule asks for it.

    Args:
      members: False (default): every seed under every schedule. True: ``schedule`` and ``seeds`` are
        equally long lists, member i trains ``seeds[i]`` under ``schedule[i]`` (a part of a comparison
        cut for parallel workers; a member's numbers do not depend on who else is in the ensemble).
      on_progress: ``(done, total, phase: str)`` called as work progresses (units: flossing + training steps).
      should_stop: ``() -> bool`` polled every step; True raises ``Cancelled``.
    Returns:
      one run record (dict) per (schedule, seed), schedules outermost: status done/diverged, success,
      convergence_step, final metrics, metrics / spectra / jacobian rows, timings, device, versions,
      full config.
    """
    schedules = [schedule] if isinstance(schedule, S.Schedule) else list(schedule)
    dev = resolve_device(device)
    T.validate_task(task)
    M.validate_model(model)
    for s in schedules:
        S.validate_schedule(s)
    validate_train(train_cfg)
    d = M.state_dim(model)
    validate_floss(floss, d)
    seeds = [int(s) for s in seeds]
    if not seeds or not schedules:
        raise ValueError("seeds and schedules must each hold at least one entry")
    kind = T.loss_kind(task)
    n_in, n_out = T.task_dims(task)
    if members:
        if len(schedules) != len(seeds):
            raise ValueError(f"members=True needs one schedule per seed, got {len(schedules)} and {len(seeds)}")
        member_seeds, sched = list(seeds), list(schedules)
        schedules = list({s.name: s for s in schedules}.values())
    else:
        member_seeds = [s for _ in schedules for s in seeds]
        sched = [s for s in schedules for _ in seeds]          # each member's schedule
    e = len(member_seeds)
    t_wall = time.perf_counter()

    params = {k: v.to(dev).requires_grad_(True)
              for k, v in M.init_ensemble(model, n_in, n_out, member_seeds, batch=task.batch).items()}
    task_opt = EnsembleAdam(list(params.values()), lr=train_cfg.lr)
    floss_opt = EnsembleAdam([params[k] for k in M.flossed_names(params)], lr=floss.lr)
    g_train, g_test = member_generators(member_seeds, 1), member_generators(member_seeds, 2)
    g_floss, g_check = member_generators(member_seeds, 3), member_generators(member_seeds, 6)
    Q0 = member_q0(member_seeds, d, floss.k, dev)
    diag_inputs = _bits(member_generators(member_seeds, 5), train_cfg.diag_len, 1, n_in, dev) if kind == "bce" \
        else T.make_ensemble_batch(task, member_generators(member_seeds, 5), split="test", batch=1).inputs.to(dev)
    # the diagnostics window is a test window for csv tasks: keep its transient inside it
    diag_transient = min(train_cfg.diag_transient, diag_inputs.shape[0] // 2)
    members = [_Member(s) for s in member_seeds]
    active = torch.ones(e, dtype=torch.bool, device=dev)
    seconds = {"floss": [0.0] * e, "train": 0.0, "diag": 0.0}
    total = work_units(schedules, train_cfg.steps)
    done = [0]

    def mask(indices) -> torch.Tensor:
        m = torch.zeros(e, dtype=torch.bool, device=dev)
        m[list(indices)] = True
        return m

    def tick(n: int, phase: str) -> None:
        done[0] += n
        if on_progress:
            on_progress(min(done[0], total), total, phase)
        if should_stop and should_stop():
            raise Cancelled()

    def diverge(bad: torch.Tensor, step: int, reason: str) -> None:
        for i in torch.nonzero(bad & active).flatten().tolist():
            members[i].diverged_step, members[i].reason = step, reason
        active.mul_(~bad)

    def snapshot(step: int, phase: str, who: torch.Tensor) -> None:
        """Spectrum, λ_1, κ₂, singular values and gradient-vs-horizon of the active members in ``who``."""
        if not train_cfg.diagnostics:
            return
        t0 = time.perf_counter()
        dt = DIAG_DTYPES[train_cfg.diag_dtype]
        with torch.no_grad():
            p = {k: v.detach().to(dt) for k, v in params.items()}
            x0 = p["h0"][:, :1]
            u = M.drive(model, p, diag_inputs.to(dt))
            step_map, jac = M.step_fn(model, p), M.jacobian_fn(model, p)
            lam = lyapunov_spectrum(step_map, x0, u, d, jacobian=jac, transient=diag_transient,
                                    Q0=torch.eye(d, device=dev), qr=DIAG_QR)[:, 0]
            horizons = sorted({h for h in (1, 2, 5, 10, 20, 50, 100, 200, 300, 500, 1000) if h <= len(u)} | {len(u)})
            ltj = long_term_jacobian(step_map, x0, u, horizons, jacobian=jac, k=min(floss.k, d), qr=DIAG_QR)
        grads = gradient_vs_horizon(step_map, x0, u, loss=lambda s: M.readout(model, p, s).sum(-1))[:, :, 0]
        for i in torch.nonzero(who & active).flatten().tolist():
            m = members[i]
            m.spectra.append({"step": step, "phase": phase, "exponents": lam[i].tolist()})
            for j, h in enumerate(horizons):
                m.jacobian.append({"step": step, "phase": phase, "horizon": h,
                                   "log_sv": ltj["log_sv"][j, i, 0].tolist(),
                                   "log_kappa": float(ltj["log_kappa"][j, i, 0]),
                                   "log_kappa_k": float(ltj["log_kappa_k"][j, i, 0]),
                                   "grad_norm": float(grads[h, i])})
            log10_kappa = float(ltj["log_kappa"][-1, i, 0]) / math.log(10)
            m.final.setdefault("lambda1_before", float(lam[i, 0]))
            m.final.setdefault("log10_kappa_before", log10_kappa)
            m.final["lambda1_after"], m.final["log10_kappa_after"] = float(lam[i, 0]), log10_kappa
            if phase.endswith("_after"):
                m.final["lambda1_flossed"] = float(lam[i, 0])
        seconds["diag"] += time.perf_counter() - t0

    def run_floss(groups: dict, step: int, phase: str) -> None:
        """One flossing phase per group {n_steps: members}; members outside the groups wait."""
        for n, idx in groups.items():
            who = mask(idx) & active
            if not bool(who.any()):
                continue
            snapshot(step, phase + "_before", who)
            t0 = time.perf_counter()

            def on_step(i, loss, bad):
                if bool(bad.any()):
                    diverge(bad, step, f"flossing exponents became non-finite ({phase} flossing step {i})")
                if i % train_cfg.log_every == 0:
                    for j in torch.nonzero(who & active).flatten().tolist():
                        members[j].metrics.append({"step": step, "name": f"floss_loss_{phase}",
                                                   "value": float(loss[j])})
                tick(1, f"{phase} flossing")

            ran = floss_phase(model, params, floss, n, opt=floss_opt, generators=g_floss, Q0=Q0, channels=n_in,
                              active=who, on_step=on_step, check_generators=g_check)
            if len(ran) < n:            # every member stopped early (the stopping rule): the rest is skipped
                tick(n - len(ran), f"{phase} flossing")
            share = (time.perf_counter() - t0) / int(who.sum())
            for j in torch.nonzero(who).flatten().tolist():
                seconds["floss"][j] += share
            snapshot(step, phase + "_after", who)

    def evaluate(step: int) -> torch.Tensor:
        """Test loss / accuracy (or R²) and the top exponents (cheap monitor) of every active member."""
        t0 = time.perf_counter()
        with torch.no_grad():
            p = {k: v.detach() for k, v in params.items()}
            batch = _to(T.make_ensemble_batch(task, g_test, split="test", batch=train_cfg.eval_batch), dev)
            loss, out, targets, scored = task_forward(model, p, batch, kind)
            if kind == "bce":
                score, threshold, name = T.task_accuracy(out, targets, scored), train_cfg.success_acc, "test_acc"
            else:
                score, threshold, name = T.r2_score(out, targets, scored), task.r2_threshold, "test_r2"
            mon_k = min(train_cfg.monitor_k, d)
            lam = lyapunov_spectrum(M.step_fn(model, p), p["h0"][:, :1], M.drive(model, p, diag_inputs), mon_k,
                                    jacobian=M.jacobian_fn(model, p), transient=diag_transient,
                                    Q0=torch.eye(d, mon_k, device=dev), qr=DIAG_QR)[:, 0]
        for i in torch.nonzero(active).flatten().tolist():
            m = members[i]
            m.metrics += [{"step": step, "name": "test_loss", "value": float(loss[i])},
                          {"step": step, "name": name, "value": float(score[i])},
                          {"step": step, "name": "lambda1", "value": float(lam[i, 0])}]
            m.final.update({"test_loss": float(loss[i]), name: float(score[i])})
            if m.convergence_step is None and float(score[i]) >= threshold:
                m.convergence_step = step
        seconds["diag"] += time.perf_counter() - t0
        return lam

    # -- before training: the initial state of every member, then pre-flossing where scheduled
    snapshot(0, "init", torch.ones_like(active))
    run_floss(_groups(sched, [S.pre_steps(s) for s in sched]), 0, "pre")

    # -- training
    joint = [i for i, s in enumerate(sched) if s.name == "joint"]
    for step in range(train_cfg.steps):
        run_floss(_groups(sched, [S.inter_steps(s, step) for s in sched]), step, "inter")
        if step % train_cfg.eval_every == 0:
            lam_mon = evaluate(step)
            need = [i for i, s in enumerate(sched) if S.measures_at(s, step) and
                    S.adaptive_steps(s, float(lam_mon[i, :min(s.adaptive_k, lam_mon.shape[1])].abs().max())) > 0]
            run_floss(_groups(sched, [sched[i].adaptive_steps if i in need else 0 for i in range(e)]),
                      step, "adaptive")
        t0 = time.perf_counter()
        batch = _to(T.make_ensemble_batch(task, g_train, split="train"), dev)
        loss, *_ = task_forward(model, params, batch, kind)
        total_loss = loss
        now = [i for i in joint if S.joint_at(sched[i], step) and members[i].diverged_step is None]
        if now:
            t1 = time.perf_counter()
            idx = torch.tensor(now, device=dev)
            sub = {k: v[idx] for k, v in params.items()}
            lam = flossing_exponents(model, sub, floss, _bits([g_floss[i] for i in now], floss.seq_len, floss.batch,
                                                              n_in, dev), Q0[idx])
            f_loss = torch.zeros(e, device=dev).index_add(0, idx, flossing_loss(lam, target=floss.target).mean(1))
            weight = sched[now[0]].weight
            total_loss = loss + weight * f_loss          # the joint objective, in plain view
            for i in now:
                seconds["floss"][i] += (time.perf_counter() - t1) / len(now)
        bad = ~torch.isfinite(total_loss)
        if bool(bad.any()):
            diverge(bad, step, "task loss became non-finite")
        task_opt.zero_grad()
        torch.where(active, total_loss, torch.zeros_like(total_loss)).sum().backward()
        gnorm = clip_per_member(list(params.values()), train_cfg.clip)
        bad = ~torch.isfinite(gnorm)
        if bool(bad.any()):
            diverge(bad, step, "gradient became non-finite")
        task_opt.step(active.clone())
        seconds["train"] += time.perf_counter() - t0
        loss = loss.detach()
        if step % train_cfg.log_every == 0:
            for i in torch.nonzero(active).flatten().tolist():
                members[i].metrics += [{"step": step, "name": "train_loss", "value": float(loss[i])},
                                       {"step": step, "name": "grad_norm", "value": float(gnorm[i])}]
        tick(1, "training")
    if (train_cfg.steps - 1) % train_cfg.eval_every:
        evaluate(train_cfg.steps - 1)
    snapshot(train_cfg.steps, "final", torch.ones_like(active))

    wall = time.perf_counter() - t_wall
    base = {"model": asdict(model), "task": asdict(task), "train": asdict(train_cfg), "floss": asdict(floss)}
    records = []
    for i, m in enumerate(members):
        status = "diverged" if m.diverged_step is not None else "done"
        # an ensemble's shared work (training, diagnostics) is charged to its members in equal shares,
        # flossing only to the members that flossed; the shares add up to the ensemble's wall time
        shared = (wall - sum(seconds["floss"])) / e
        records.append({
            "schedule": sched[i].name, "seed": m.seed, "member": i,
            "config": {**base, "schedule": asdict(sched[i]), "seed": m.seed},
            "status": status, "success": status == "done" and m.convergence_step is not None,
            "convergence_step": m.convergence_step, "diverged_step": m.diverged_step, "reason": m.reason,
            "final": {**m.final, "ensemble_size": e},
            "floss_seconds": seconds["floss"][i], "train_seconds": seconds["train"] / e,
            "wall_seconds": seconds["floss"][i] + shared, "device": str(dev), "versions": versions(),
            "metrics": m.metrics, "spectra": m.spectra, "jacobian": m.jacobian})
    return records


def _to(batch: T.Batch, dev: torch.device) -> T.Batch:
    if batch.inputs.device == dev:
        return batch
    return T.Batch(batch.inputs.to(dev), batch.targets.to(dev), batch.mask.to(dev))


def measure_spectrum(model: M.ModelConfig, params: dict, k: int, *, steps: int = 1000, transient: int = 100,
                     seed: int = 0, inputs: str = "bits", channels: int = 1,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Long-window exponents (E, k) of an ensemble driven by random bits (or no input), from the first
    initial-state column: the honest check of what flossing did beyond the window it optimises.
    ``dtype`` float64 keeps strongly negative exponents exact (float32 loses them below about -1)."""
    p = {key: v.detach().to(dtype) for key, v in params.items()}
    e, dev = p["h0"].shape[0], p["h0"].device
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 2, (steps, 1, 1, channels), generator=gen).to(dtype) if inputs == "bits" \
        else torch.zeros(steps, 1, 1, channels, dtype=dtype)
    u = M.drive(model, p, x.expand(steps, e, 1, channels).to(dev))
    with torch.no_grad():
        return lyapunov_spectrum(M.step_fn(model, p), p["h0"][:, :1], u, k, jacobian=M.jacobian_fn(model, p),
                                 transient=transient, generator=gen, qr=DIAG_QR)[:, 0]


MEASURE_STEPS, MEASURE_TRANSIENT = 2000, 200    # floss_fresh's independent re-measurement window


def floss_fresh(model: M.ModelConfig, floss: FlossConfig, n_steps: int, seeds, *, channels: int = 1,
                device: str = "cpu", measure_steps: int = MEASURE_STEPS,
                measure_transient: int = MEASURE_TRANSIENT) -> dict:
    """Floss freshly initialised networks with no task: the first k exponents before and after up to
    ``n_steps`` flossing steps, (E, k) each, measured in float64 on a long window of fresh input bits
    that no flossing step (nor the stopping rule) saw. ``steps_taken`` (E,) counts each member's steps."""
    dev = resolve_device(device)
    M.validate_model(model)
    validate_floss(floss, M.state_dim(model))
    params = {k: v.to(dev).requires_grad_(True)
              for k, v in M.init_ensemble(model, channels, 1, seeds).items()}
    measure = dict(steps=measure_steps, transient=measure_transient, channels=channels, dtype=torch.float64)
    before = measure_spectrum(model, params, floss.k, **measure)
    opt = EnsembleAdam([params[k] for k in M.flossed_names(params)], lr=floss.lr)
    Q0 = member_q0(seeds, M.state_dim(model), floss.k, dev)
    active = torch.ones(len(seeds), dtype=torch.bool, device=dev)
    history = floss_phase(model, params, floss, n_steps, opt=opt, generators=member_generators(seeds, 3), Q0=Q0,
                          channels=channels, active=active, check_generators=member_generators(seeds, 6))
    after = measure_spectrum(model, params, floss.k, **measure)
    loss = torch.stack(history) if history else None
    taken = torch.isfinite(loss).sum(0).tolist() if loss is not None else [0] * len(seeds)
    return {"before": before, "after": after, "loss": loss, "params": params, "steps_taken": taken}


def save_params(params: dict, path, member: int = 0) -> None:
    """Write one member's parameters as a torch state dict of plain tensors, keys as in the model
    (J, W_in, b, w_out, c, h0 for the rnn), atomically (``files.atomic_write``)."""
    import io

    from .files import atomic_write

    buf = io.BytesIO()
    torch.save({k: v[member].detach().cpu().clone().contiguous() for k, v in params.items()}, buf)
    atomic_write(path, buf.getvalue())
