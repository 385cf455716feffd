"""Flossing: the window, its exponents, the phase, and flossing with no task.

* the members' random streams (``member_generators``: one per member and purpose), their fixed Q0
  (``member_q0``) and the input bits of a window (``_bits``);
* the flossing window: its state trajectory with the gradient path the design asks for
  (``state_gradient``, ``_window_states``) and its first k exponents (``flossing_exponents``, with the
  architecture's window kernel where it has one);
* ``floss_phase``: up to n flossing steps of the chosen members, with the lr schedule, clipping and the
  stopping rule; ``floss_fresh``: a phase on freshly initialised networks, measured before and after on
  an independent long window; ``save_params``: one member's parameters to a file.

The training loop (``train``) calls these; they know nothing of tasks beyond their input channels.
"""
from __future__ import annotations

import math

import torch

from . import diagnostics as D
from . import models as M
from . import tasks as T
from .configs import FlossConfig, resolve_device, validate_floss
from .diagnostics import DIAG_QR, measure_spectrum
from .flossing import flossing_loss
from .lyapunov import lyapunov_spectrum, random_orthonormal
from .optim import EnsembleAdam, clip_some, cosine_lr


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
    x = torch.stack([T.random_bits((length, batch, channels), g) for g in generators], 1)
    return x.to(device=device, dtype=torch.float32)


def state_gradient(floss: FlossConfig) -> str:
    """How a flossing gradient treats the state trajectory: 'full' (through every state, the reference),
    'truncated' (state_horizon steps back), 'auto' (truncated for chaotic networks, full otherwise),
    'one_step' (each state's direct dependence on the weights only) or 'none' (the Jacobians only)."""
    if floss.state_grad is not None:
        return floss.state_grad
    return "full" if floss.through_states else "none"


def _window_states(model: M.ModelConfig, params: dict, floss: FlossConfig, x0: torch.Tensor, u: torch.Tensor,
                   Q0: torch.Tensor, *, fused: bool, chaotic: torch.Tensor | None) -> torch.Tensor | None:
    """The flossing window's state trajectory (L, E, b, D), with the gradient path ``state_gradient``
    asks for; None for 'full' without ``fused`` (the tangent loop then steps the states itself)."""
    mode = state_gradient(floss)
    states = M.run_driven(model, params, x0, u, fused=fused) if fused or mode != "full" else None
    if mode == "none":
        return states.detach()
    if mode in ("truncated", "auto"):
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
        return torch.cat(blocks)
    if mode == "one_step":
        # each state's direct dependence on the weights, x_t = step(detached x_{t-1}, u_t): the first-order
        # effect of the weights on where the trajectory runs (its saturation), without the chaotic
        # propagation e^{λ_1 t} that the full trajectory gradient carries
        prev = torch.cat([x0[None], states[:-1]]).detach()
        step_all = M.ARCHS[model.arch].step_all
        if step_all is not None:
            return step_all(params, prev, u)
        step = M.step_fn(model, params)
        return torch.stack([step(prev[t], u[t]) for t in range(u.shape[0])])
    return states


def flossing_exponents(model: M.ModelConfig, params: dict, floss: FlossConfig, inputs: torch.Tensor,
                       Q0: torch.Tensor, *, fused: bool = True, chaotic: torch.Tensor | None = None) -> torch.Tensor:
    """Exponents of one flossing window per member: inputs (L, E, b, C), Q0 (E, D, k) -> (E, b, k).

    Starts from the first initial-state column (detached, as in the reference code). ``fused``
    computes the state trajectory with the model's sequence kernel first (the tangent loop then only
    propagates Q), and with qr 'auto' uses the architecture's window kernel where it has one
    (``Arch.fused_lyapunov``); False steps state and tangent together (the reference path).
    ``chaotic`` (E,) bool: for state_grad 'auto', the members whose trajectory gradient is truncated
    (default: those whose window λ̂_1 is > 0)."""
    e, b = inputs.shape[1], inputs.shape[2]
    x0 = params["h0"][:, :1].detach().expand(e, b, -1)
    u = M.drive(model, params, inputs)
    states = _window_states(model, params, floss, x0, u, Q0, fused=fused, chaotic=chaotic)
    kernel = M.ARCHS[model.arch].fused_lyapunov
    if fused and floss.qr == "auto" and kernel is not None:
        # the window kernel: states before each step, x_0 .. x_{L-1}; the same exponents (tests compare)
        return kernel(params, torch.cat([x0[None], states[:-1]]), Q0[:, None], transient=floss.transient,
                      qr_every=floss.qr_every)
    return lyapunov_spectrum(M.step_fn(model, params), x0, u, floss.k, jacobian=M.jacobian_fn(model, params),
                             transient=floss.transient, qr_every=floss.qr_every, Q0=Q0[:, None],
                             qr="householder" if floss.qr == "auto" else floss.qr,
                             trajectory=states)


def floss_phase(model: M.ModelConfig, params: dict, floss: FlossConfig, n_steps: int, *, opt: EnsembleAdam,
                generators, Q0: torch.Tensor, channels: int, active: torch.Tensor, on_step=None,
                check_generators=None) -> list:
    """Up to ``n_steps`` flossing steps for the members where ``active`` is True: loss = flossing_loss(λ)
    per member, summed. Only those members are computed (a differentiable slice of the stacked
    parameters) and only their flossing data streams advance, so a member's numbers do not depend
    on who else is in the ensemble. A member whose exponents turn non-finite drops out of the phase.

    The step's learning rate follows ``optim.cosine_lr`` (constant without ``lr_end``); with
    ``floss.clip`` each member's gradient is clipped per parameter array (with ``clip_chaotic_only`` only
    the members that are chaotic); with ``floss.stop_tol`` > 0 every ``stop_every`` steps each flossing
    member's first k exponents are measured on a fresh long window (bits from ``check_generators``, one
    per member, never the flossing windows' stream) and a member within the tolerance stops flossing.
    The same measurement (also at step 0 where 'auto' or clip_chaotic_only need it) says which members
    are chaotic: λ_1 > 0.

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
            # one long-window measurement per member (stop_len steps of its own bits, a fifth of them
            # transient) serves both: the stopping rule, and the regime (λ_1 > 0: chaotic) that 'auto' and
            # clip_chaotic_only act on
            idx = torch.nonzero(live).flatten()
            window = _bits([check_generators[j] for j in idx.tolist()], floss.stop_len, 1, channels, Q0.device)
            lam = D.top_exponents(model, {k: v[idx] for k, v in params.items()}, window, floss.k,
                                  transient=floss.stop_len // 5)
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
        clip_some(opt.params, floss.clip, chaotic if floss.clip_chaotic_only else None)
        step_mask = torch.zeros_like(live)
        step_mask[idx[ok]] = True
        opt.lr = cosine_lr(floss.lr, floss.lr_end, i, n_steps)
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
