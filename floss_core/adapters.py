"""Floss your own model: PyTorch's nn.RNN / nn.GRU / nn.LSTM, their *Cell variants, any step map.

A user's module becomes a one-step map ``step(state (B, D), x (B, C)) -> state (B, D)`` over ONE flat
state vector: all layers' hidden states (layer 0 first), then, for an LSTM, all layers' cell states.
It is stepped layer by layer with the module's own weights and the cell equations of the PyTorch docs
(the fused nn.LSTM kernel has no forward-mode AD on the CPU), so the pure functions of ``lyapunov.py``
apply unchanged: tangents come from forward-mode JVPs, no hand-written Jacobian is needed.

On top of that map, for the two modes of gradient flossing (Engelken, NeurIPS 2023):

    lam = spectrum(lstm, x, k=8)                                   # (B, k) exponents, nats per step
    loss = task_loss + 0.1 * flossing_loss_term(lstm, x, k=8)      # as a term, every M steps
    floss(lstm, sampler, k=8, steps=200, lr=1e-3)                  # or as a separate phase
    forecast(lam, delay=60)["verdict"]                             # trainability forecast

plus ``diagnostics`` (long-term Jacobian κ₂ and gradient vs horizon), ``load_checkpoint`` /
``save_state_dict`` for state dicts, and the two reports the dashboard's "Your model" page shows.

Inputs are in the module's own layout: (T, B, C), or (B, T, C) with ``batch_first``, or (T, C)
unbatched; an int T means T steps without input (x = 0). ``h0`` is what the module itself takes
((L, B, H) or ``(h, c)`` for the full modules, (B, H) or ``(h, c)`` for cells), default zeros.
For a custom step map, inputs are time-major (x_t = inputs[t]) and ``h0`` is its flat state (..., D).
Dropout between layers is not applied: the map is the module's evaluation-mode dynamics.
"""
from __future__ import annotations

import copy
import io
import math
import os
import re
from typing import Callable, NamedTuple

import torch
import torch.autograd.forward_ad as fwAD
from torch import nn

from .files import atomic_write
from .flossing import flossing_loss
from .train import LAB_FLOSS
from .lyapunov import forecast_horizon, gradient_vs_horizon, long_term_jacobian, lyapunov_spectrum, \
    random_orthonormal

# module class -> (cell kind, is a single cell)
MODULES = {nn.RNN: ("rnn", False), nn.GRU: ("gru", False), nn.LSTM: ("lstm", False),
           nn.RNNCell: ("rnn", True), nn.GRUCell: ("gru", True), nn.LSTMCell: ("lstm", True)}
# architecture names of checkpoints -> module class
ARCHS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM,
         "rnn_cell": nn.RNNCell, "gru_cell": nn.GRUCell, "lstm_cell": nn.LSTMCell}
GATES = {"rnn": 1, "gru": 3, "lstm": 4}    # rows of weight_ih per hidden unit
MAX_CHECKPOINT_BYTES = 50_000_000
HORIZONS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
# the lab's flossing design (train.LAB_FLOSS, chosen by bench/floss_study.py) for your own module: the
# state-trajectory gradient truncated to 3 steps, and while the module is chaotic each parameter tensor's
# gradient clipped to 0.03
STATE_HORIZON = LAB_FLOSS.state_horizon
CLIP = LAB_FLOSS.clip
CLIP_CHAOTIC_ONLY = LAB_FLOSS.clip_chaotic_only

# λ_1 in [0, EDGE_OF_CHAOS] nats/step reads as "marginal" (a flossed network lands there, e.g. +0.003),
# above it as chaotic: an RNN with g = 2 at λ_1 = +0.04 failed a delay-10 copy task (README table)
EDGE_OF_CHAOS = 0.01


# ------------------------------------------------------------------------------------ cells
# One step of one layer, as in the docs of torch.nn.RNNCell / GRUCell / LSTMCell (same gate order).
def _lin(x, w, b):
    # x @ wᵀ + b written out: F.linear's forward-mode AD on broadcast inputs goes through a slow
    # Python decomposition (addmm), matmul and add have native tangent formulas
    y = x @ w.mT
    return y if b is None else y + b


def _rnn_cell(x, h, w, act):
    return act(_lin(x, w[0], w[2]) + _lin(h, w[1], w[3]))


def _gru_cell(x, h, w):
    ir, iz, i_n = _lin(x, w[0], w[2]).chunk(3, dim=-1)
    hr, hz, hn = _lin(h, w[1], w[3]).chunk(3, dim=-1)
    r = torch.sigmoid(ir + hr)
    z = torch.sigmoid(iz + hz)
    n = torch.tanh(i_n + r * hn)
    return (1 - z) * n + z * h


def _lstm_cell(x, h, c, w):
    i, f, g, o = (_lin(x, w[0], w[2]) + _lin(h, w[1], w[3])).chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


# ------------------------------------------------------------------------------------ the adapter
class Stepper(NamedTuple):
    """A module seen as a one-step map over one flat state vector."""
    step: Callable        # (state (..., D), x (..., C) or None) -> state (..., D); None means x = 0
    state_from: Callable  # the module's own hidden state -> flat state (B, D), or (D,) unbatched
    state_to: Callable    # flat state -> the module's own hidden state
    dim: int              # D, the dimension of the state and of its tangent space
    input_size: int | None  # C (None for a custom step map)
    params: tuple         # the tensors a flossing phase updates by default (the module's parameters)
    tangent: Callable | None  # (state, x, new, Q (..., D, k)) -> D_t Q by forward-mode AD; None: lyapunov's default


def _forward_tangent(cell_step, weights, n_in: int):
    """Tangent map ``(state, x, new_state, Q (..., D, k)) -> D_t Q`` from ONE forward-mode AD pass
    with the k tangent columns as an extra leading batch dimension of the state (no vmap).

    Every other operand (weights, biases, input) enters as a dual number with a zero tangent: in
    torch 2.13 a binary op between a dual and a plain tensor takes a slow decomposed path (about
    1 ms each on the CPU, 30x a dual-dual op), which would make the tangent 20x slower than the step.
    """
    def tangent(state, x, new, Q):
        V = Q.movedim(-1, 0).contiguous()                                  # (k, ..., D)
        if x is None:
            x = state.new_zeros(*state.shape[:-1], n_in)
        with fwAD.dual_level():
            def const(t):
                return None if t is None else fwAD.make_dual(t, torch.zeros_like(t))
            ws = [tuple(const(t) for t in w) for w in weights]
            dual = fwAD.make_dual(state.expand_as(V).contiguous(), V)
            return fwAD.unpack_dual(cell_step(dual, const(x), ws)).tangent.movedim(0, -1)
    return tangent


def _describe(module) -> str:
    return type(module).__name__


def _kind(module):
    """(cell kind, is a cell) of a supported module, None for anything else."""
    for cls, kind in MODULES.items():
        if type(module) is cls:
            return kind
    return None


def _layer_weights(module, cell: bool) -> list[tuple]:
    """Per layer (weight_ih, weight_hh, bias_ih or None, bias_hh or None): the module's own tensors."""
    if cell:
        return [(module.weight_ih, module.weight_hh, module.bias_ih, module.bias_hh)]
    return [tuple(getattr(module, f"{name}_l{l}", None) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            for l in range(module.num_layers)]


def module_step(module, *, params=None) -> Stepper:
    """The one-step map of ``module`` over a flat state vector.

    Args:
      module: torch.nn.RNN / GRU / LSTM (any num_layers, batch_first either way, bias on or off,
        tanh or relu for RNN; not bidirectional, no proj_size), torch.nn.RNNCell / GRUCell /
        LSTMCell, or any callable ``step(state (..., D), x) -> state (..., D)`` (an nn.Module
        whose forward is such a map counts as one).
      params: tensors a flossing phase should update; default the module's parameters
        (a plain function has none: pass them here to floss it).
    Returns:
      a ``Stepper``: ``step``, ``state_from`` (module state -> flat (B, D)), ``state_to`` (its
      inverse), ``dim`` D = L·H (RNN, GRU) or 2·L·H (LSTM: h of every layer, then c of every layer),
      ``input_size`` and ``params``. The step reads the module's parameters live, so in-place
      optimiser updates are seen and gradients flow into them.
    """
    kind = _kind(module)
    own = tuple(params) if params is not None else \
        tuple(module.parameters()) if isinstance(module, nn.Module) else ()
    if kind is None:
        if not callable(module):
            raise ValueError(f"expected a torch.nn.RNN/GRU/LSTM, one of their Cells or a callable "
                             f"step(state, x) -> state, got {type(module).__name__}")
        identity = lambda s: s  # noqa: E731
        return Stepper(lambda s, x: module(s, x), identity, identity, None, None, own, None)
    cell_kind, cell = kind
    if not cell and module.bidirectional:
        raise ValueError("bidirectional modules have no forward-in-time dynamics to floss; use bidirectional=False")
    if getattr(module, "proj_size", 0):
        raise ValueError("LSTM with proj_size > 0 is not supported; use proj_size=0")
    weights = _layer_weights(module, cell)
    n_layers, hidden, n_in = len(weights), module.hidden_size, module.input_size
    act = torch.relu if getattr(module, "nonlinearity", "tanh") == "relu" else torch.tanh
    lh = n_layers * hidden

    def cell_step(state, x, weights):
        hs = state[..., :lh].unflatten(-1, (n_layers, hidden)).unbind(-2)
        cs = state[..., lh:].unflatten(-1, (n_layers, hidden)).unbind(-2) if cell_kind == "lstm" else None
        new_h, new_c, inp = [], [], x
        for layer, w in enumerate(weights):     # layer l is driven by the NEW state of layer l-1
            if cell_kind == "lstm":
                h, c = _lstm_cell(inp, hs[layer], cs[layer], w)
                new_c.append(c)
            elif cell_kind == "gru":
                h = _gru_cell(inp, hs[layer], w)
            else:
                h = _rnn_cell(inp, hs[layer], w, act)
            new_h.append(h)
            inp = h
        return torch.cat(new_h + new_c, dim=-1)

    def step(state, x):
        if x is None:  # an autonomous step: zero input
            x = state.new_zeros(*state.shape[:-1], n_in)
        return cell_step(state, x, weights)

    if cell:
        def state_from(s):
            return torch.cat(s, dim=-1) if cell_kind == "lstm" else s

        def state_to(flat):
            return tuple(flat.chunk(2, dim=-1)) if cell_kind == "lstm" else flat
    else:
        def _flat(h):       # (L, B, H) -> (B, L·H); (L, H) -> (L·H,)
            return h.movedim(0, -2).flatten(-2)

        def _layered(flat):  # inverse of _flat
            return flat.unflatten(-1, (n_layers, hidden)).movedim(-2, 0)

        def state_from(s):
            return torch.cat([_flat(s[0]), _flat(s[1])], dim=-1) if cell_kind == "lstm" else _flat(s)

        def state_to(flat):
            if cell_kind == "lstm":
                return _layered(flat[..., :lh]), _layered(flat[..., lh:])
            return _layered(flat)
    dim = lh * (2 if cell_kind == "lstm" else 1)
    return Stepper(step, state_from, state_to, dim, n_in, own, _forward_tangent(cell_step, weights, n_in))


def _prepare(module, inputs, h0):
    """Validate once at the boundary. Returns (stepper, time-major inputs (T, B, C) or an int T,
    flat state0 (B, D), unbatched: bool)."""
    st = module_step(module)
    kind = _kind(module)
    if kind is None:  # a custom step map: time-major inputs, flat h0
        if h0 is None:
            raise ValueError("a custom step map needs h0, its initial state of shape (..., D)")
        h0 = torch.as_tensor(h0)
        steps = inputs if isinstance(inputs, int) else len(inputs)
        if steps < 1:
            raise ValueError(f"inputs must hold at least one time step, got {steps}")
        return st._replace(dim=h0.shape[-1]), inputs, h0, False
    p = next(iter(module.parameters()))
    cell = kind[1]
    if isinstance(inputs, bool) or not isinstance(inputs, (int, torch.Tensor)):
        raise ValueError(f"inputs must be a tensor or an int number of steps, got {type(inputs).__name__}")
    if isinstance(inputs, int):
        if inputs < 1:
            raise ValueError(f"inputs must hold at least one time step, got {inputs}")
        xs, unbatched, batch = inputs, False, None
    else:
        if inputs.dim() not in (2, 3):
            raise ValueError(f"inputs must be (T, B, C){'' if cell else ' or (B, T, C) with batch_first'} or "
                             f"(T, C), got shape {tuple(inputs.shape)}")
        if inputs.shape[-1] != st.input_size:
            raise ValueError(f"inputs have {inputs.shape[-1]} channels, the {_describe(module)} expects "
                             f"input_size={st.input_size}")
        unbatched = inputs.dim() == 2
        xs = inputs[:, None] if unbatched else \
            inputs.transpose(0, 1) if (not cell and module.batch_first) else inputs
        if xs.shape[0] < 1:
            raise ValueError("inputs must hold at least one time step, got 0")
        xs = xs.to(dtype=p.dtype, device=p.device)
        batch = xs.shape[1]
    if h0 is None:
        state0 = torch.zeros(batch or 1, st.dim, dtype=p.dtype, device=p.device)
    else:
        state0 = st.state_from(h0)
        if state0.dim() == 1:
            state0 = state0[None]
        if state0.shape[-1] != st.dim or (batch is not None and state0.shape[0] != batch):
            raise ValueError(f"h0 does not fit the {_describe(module)}: flat state {tuple(state0.shape)}, "
                             f"expected ({batch or 'B'}, {st.dim})")
        state0 = state0.to(dtype=p.dtype, device=p.device)
    return st, xs, state0, unbatched


def _q0(d: int, k: int, seed: int, like: torch.Tensor) -> torch.Tensor:
    return random_orthonormal(d, k, generator=torch.Generator().manual_seed(seed), dtype=like.dtype,
                              device=like.device)


def _check_k(k, d):
    if k is None:
        return d
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= d:
        raise ValueError(f"k must be in 1..{d} (the state dimension), got {k}")
    return k


# ------------------------------------------------------------------------------------ measurements
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
    """The module itself, or a float copy of it in ``dtype`` (the user's module is never converted)."""
    if dtype is None or not isinstance(module, nn.Module):
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
    for i in range(steps):
        inputs = inputs_or_sampler(i) if callable(inputs_or_sampler) else inputs_or_sampler
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
    """
    module = _in_dtype(module, dtype)
    st, xs, state0, unbatched = _prepare(module, inputs, h0)
    steps = xs if isinstance(xs, int) else xs.shape[0]
    horizons = sorted({h for h in HORIZONS if h <= steps} | {steps}) if horizons is None else list(horizons)
    k = _check_k(k, st.dim)
    ltj = long_term_jacobian(st.step, state0.detach(), xs, horizons, jacobian=st.tangent, k=k)
    if bool(torch.isinf(ltj["log_kappa"]).any()):
        raise ValueError("the long-term Jacobian is singular (a one-step Jacobian has an exactly zero "
                         "direction, e.g. dead ReLU units): κ₂ is infinite")
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
    from . import models as M
    from .train import measure_spectrum

    M.validate_model(model)
    _check_forecast(delay, tol)
    if transient < 0 or steps <= transient:
        raise ValueError(f"steps ({steps}) must exceed the transient ({transient})")
    params = M.init_ensemble(model, channels, 1, [seed])
    lam = measure_spectrum(model, params, 1, steps=steps, transient=transient, seed=seed, channels=channels)[0]
    return {**forecast(float(lam[0]), delay, tol=tol), "exponents": lam.tolist()}


# ------------------------------------------------------------------------------------ checkpoints
def build_module(arch: str, *, hidden: int, input_size: int, num_layers: int = 1, bias: bool = True,
                 nonlinearity: str = "tanh", batch_first: bool = False) -> nn.Module:
    """A fresh torch module by name (``ARCHS``: rnn, gru, lstm, rnn_cell, gru_cell, lstm_cell)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    for name, value, hi in (("hidden", hidden, 4096), ("input_size", input_size, 4096), ("num_layers", num_layers, 16)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi:
            raise ValueError(f"{name} must be an integer in 1..{hi}, got {value!r}")
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"unknown nonlinearity {nonlinearity!r}; choose one of tanh, relu")
    if nonlinearity != "tanh" and not arch.startswith("rnn"):
        raise ValueError(f"nonlinearity applies to rnn and rnn_cell only, not {arch}")
    cls = ARCHS[arch]
    extra = {"nonlinearity": nonlinearity} if arch.startswith("rnn") else {}
    if arch.endswith("_cell"):
        if num_layers != 1:
            raise ValueError(f"a {arch} has one layer, got num_layers={num_layers}")
        return cls(input_size, hidden, bias=bias, **extra)
    return cls(input_size, hidden, num_layers=num_layers, bias=bias, batch_first=batch_first, **extra)


def _read_bytes(file_or_bytes, max_bytes: int) -> bytes:
    if isinstance(file_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(file_or_bytes)
    elif isinstance(file_or_bytes, (str, os.PathLike)):
        try:
            size = os.path.getsize(file_or_bytes)
        except OSError:
            raise ValueError(f"checkpoint file not found: {file_or_bytes}") from None
        if size > max_bytes:
            raise ValueError(f"checkpoint is too big: {size:,} bytes, the limit is {max_bytes:,}")
        with open(file_or_bytes, "rb") as f:
            data = f.read(max_bytes + 1)
    elif hasattr(file_or_bytes, "read"):
        data = file_or_bytes.read(max_bytes + 1)
    else:
        raise ValueError(f"expected bytes, a path or a file object, got {type(file_or_bytes).__name__}")
    if len(data) > max_bytes:
        raise ValueError(f"checkpoint is too big: {len(data):,} bytes or more, the limit is {max_bytes:,}")
    if not data:
        raise ValueError("checkpoint is empty")
    return data


def _shape(t) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def load_checkpoint(file_or_bytes, *, arch: str, hidden: int, input_size: int, num_layers: int = 1,
                    bias: bool = True, nonlinearity: str = "tanh", batch_first: bool = False, prefix: str = "",
                    max_bytes: int = MAX_CHECKPOINT_BYTES) -> nn.Module:
    """A module of the declared architecture with the weights of a saved ``state_dict``.

    Loaded with ``torch.load(weights_only=True)`` (no code from the file runs), at most ``max_bytes``.
    Keys under ``prefix`` (e.g. 'lstm.' for a submodule of a bigger model) are used and the others
    ignored; with no prefix the dict must hold exactly the module's keys. Refused with a one-line
    ValueError naming the missing or unexpected key or the mismatched shape.
    """
    module = build_module(arch, hidden=hidden, input_size=input_size, num_layers=num_layers, bias=bias,
                          nonlinearity=nonlinearity, batch_first=batch_first)
    data = _read_bytes(file_or_bytes, max_bytes)
    try:
        sd = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to unpickle is the file's fault
        text = str(e)
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if found:
            raise ValueError(f"not a plain state_dict: it holds {found.group(1)}, which torch.load(weights_only=True) "
                             "refuses to run; save module.state_dict() instead") from None
        found = re.search(r"WeightsUnpickler error:\s*(.+)", text)
        reason = found.group(1).strip() if found else (text.strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"could not read the checkpoint as a torch.save file: {reason[:200]}") from None
    if not isinstance(sd, dict):
        raise ValueError(f"not a state_dict: the file holds a {type(sd).__name__}, expected a dict of tensors "
                         "(save module.state_dict())")
    if prefix:
        sd = {key[len(prefix):]: v for key, v in sd.items() if isinstance(key, str) and key.startswith(prefix)}
    for key, value in sd.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            what = type(value).__name__
            raise ValueError(f"not a state_dict: key {key!r} holds a {what}, expected a tensor"
                             + (" (a training checkpoint? pass its model's state_dict)" if isinstance(value, dict) else ""))
    name = (f"{arch}(hidden={hidden}, input_size={input_size}"
            + (f", num_layers={num_layers}" if not arch.endswith("_cell") else "") + f", bias={bias})")
    expected = module.state_dict()
    missing = [key for key in expected if key not in sd]
    unexpected = [key for key in sd if key not in expected]
    if missing:
        hint = ""
        under = {key[: -len(missing[0])] for key in sd if key.endswith("." + missing[0])}
        if len(under) == 1 and not prefix:
            hint = f"; the keys sit under {next(iter(under))!r}: pass prefix={next(iter(under))!r}"
        raise ValueError(f"checkpoint does not match {name}: missing key {missing[0]!r}{hint}")
    if unexpected:
        raise ValueError(f"checkpoint does not match {name}: unexpected key {unexpected[0]!r}")
    for key, want in expected.items():
        got = sd[key]
        if got.shape != want.shape:
            hint, hh = "", sd.get("weight_hh_l0", sd.get("weight_hh"))
            if hh is not None and hh.dim() == 2 and hh.shape[1] and hh.shape[0] % hh.shape[1] == 0:
                guess = {v: k for k, v in GATES.items()}.get(hh.shape[0] // hh.shape[1])
                if guess:  # gate rows per hidden unit: 1 rnn, 3 gru, 4 lstm
                    hint = f" (it looks like a {guess} with hidden={hh.shape[1]})"
            raise ValueError(f"checkpoint does not match {name}: {key!r} has shape {_shape(got)}, "
                             f"expected {_shape(want)}{hint}")
        if not got.is_floating_point():
            raise ValueError(f"checkpoint key {key!r} holds {got.dtype} values, expected floating point")
        if not bool(torch.isfinite(got).all()):
            raise ValueError(f"checkpoint key {key!r} holds NaN or infinite values")
    module.to(next(iter(sd.values())).dtype)
    module.load_state_dict(sd)
    return module


def save_state_dict(module: nn.Module) -> bytes:
    """The module's ``state_dict`` as the bytes of a ``torch.save`` file (loadable with weights_only=True)."""
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu().clone() for k, v in module.state_dict().items()}, buf)
    return buf.getvalue()


# ------------------------------------------------------------------------------------ reports (dashboard)
def bit_inputs(module, steps: int, *, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """Random input bits in the module's own layout ((T, B, C), or (B, T, C) with batch_first)."""
    st = module_step(module)
    x = torch.randint(0, 2, (steps, batch, st.input_size), generator=torch.Generator().manual_seed(seed))
    x = x.to(next(iter(module.parameters())).dtype)
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
        x = torch.randint(0, 2, (window, 1, st.input_size), generator=gen).to(measure.dtype)
        return x.transpose(0, 1) if batch_first else x

    result = floss(module, sampler, k=k, steps=steps, lr=lr, transient=transient, seed=seed, on_step=on_step)
    after = spectrum(module, measure, k=k, transient=100, seed=seed)[0]
    return {"before": before.tolist(), "after": after.tolist(), **result}


# ------------------------------------------------------------------------------------ flossing in the background
# The dashboard flosses a checkpoint in a separate process (a long job must not run in the Streamlit script):
# start_floss_job validates and starts it, floss_job_status reads what it left in its folder.

def start_floss_job(data: bytes, settings: dict, *, k: int, steps: int, lr: float):
    """Check the request here (a bad checkpoint, k, steps or lr raises ValueError and starts nothing), then
    floss in a new Python process (``_floss_job_main``; not multiprocessing, whose spawn would re-run the
    Streamlit script that called this). Returns (folder, process: ``subprocess.Popen``);
    read it with ``floss_job_status``."""
    import json
    import subprocess
    import sys
    import tempfile

    module = load_checkpoint(data, **settings)
    _check_k(k, module_step(module).dim)
    _check_floss(steps, lr)
    folder = tempfile.mkdtemp(prefix="floss-job-")
    with open(os.path.join(folder, "input.pt"), "wb") as f:
        f.write(data)
    with open(os.path.join(folder, "request.json"), "w") as f:
        json.dump({"settings": settings, "k": k, "steps": steps, "lr": lr}, f)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))      # where floss_core is importable
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "PYTHONPATH": os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    with open(os.path.join(folder, "stderr.txt"), "wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", "import sys; from floss_core.adapters import _floss_job_main; "
                                 "_floss_job_main(sys.argv[1])", folder], env=env, stdout=subprocess.DEVNULL, stderr=err)
    return folder, proc


def floss_job(folder: str, settings: dict, *, k: int, steps: int, lr: float) -> None:
    """The process body: floss ``folder/input.pt`` (``load_checkpoint(**settings)``, ``floss_checkpoint``)
    on one torch thread, writing ``progress.json`` as it goes, then ``flossed.pt`` and ``result.json``, or
    ``error.txt`` with a one-line reason."""
    import json
    import time

    torch.set_num_threads(1)
    last = [0.0]

    def write(name: str, data: str | bytes) -> None:    # atomic: a reader never sees half a file
        atomic_write(os.path.join(folder, name), data)

    def on_step(i: int, loss: float) -> None:
        if time.monotonic() - last[0] > 0.2 or i + 1 == steps:
            last[0] = time.monotonic()
            write("progress.json", json.dumps({"step": i + 1, "loss": loss}))
    try:
        with open(os.path.join(folder, "input.pt"), "rb") as f:
            module = load_checkpoint(f.read(), **settings)
        out = floss_checkpoint(module, k=k, steps=steps, lr=lr, on_step=on_step)
        write("flossed.pt", save_state_dict(module))
        write("result.json", json.dumps(out, allow_nan=True))
    except Exception as exc:  # reported to the page, never lost with the process
        msg = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        write("error.txt", (msg.splitlines() or [type(exc).__name__])[0])


def floss_job_status(folder: str, proc=None) -> dict:
    """What a flossing job left: ``{"state": "running", "step", "loss"}``, ``{"state": "done", "out",
    "weights"}`` (floss_checkpoint's dict and the flossed state_dict's bytes) or ``{"state": "failed",
    "error"}``, also when the process ended without a word (killed, out of memory)."""
    import json

    def path(name):
        return os.path.join(folder, name)
    alive = proc is None or proc.poll() is None    # first: a process found ended has written all it will
    if os.path.exists(path("result.json")):
        with open(path("result.json")) as f, open(path("flossed.pt"), "rb") as w:
            return {"state": "done", "out": json.load(f), "weights": w.read()}
    if os.path.exists(path("error.txt")):
        with open(path("error.txt")) as f:
            return {"state": "failed", "error": f.read()}
    if not alive:
        try:
            with open(path("stderr.txt"), errors="replace") as f:
                last = [ln.strip() for ln in f if ln.strip()][-1:]
        except OSError:
            last = []
        return {"state": "failed", "error": f"the flossing process ended without a result (exit code "
                                            f"{proc.returncode})" + "".join(f": {ln}" for ln in last)}
    try:
        with open(path("progress.json")) as f:
            return {"state": "running", **json.load(f)}
    except (OSError, ValueError):
        return {"state": "running", "step": 0, "loss": None}


def _floss_job_main(folder: str) -> None:
    """The entry point of the process ``start_floss_job`` starts: the request is in ``folder/request.json``."""
    import json

    with open(os.path.join(folder, "request.json")) as f:
        req = json.load(f)
    floss_job(folder, req["settings"], k=req["k"], steps=req["steps"], lr=req["lr"])
