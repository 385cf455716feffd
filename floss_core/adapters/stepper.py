"""A user's module as a one-step map over ONE flat state vector (``module_step``, ``Stepper``).

``step(state (B, D), x (B, C)) -> state (B, D)``: all layers' hidden states (layer 0 first), then, for an
LSTM, all layers' cell states. It is stepped layer by layer with the module's own weights and the cell
equations of the PyTorch docs (the GRU and LSTM gates are ``models.gru_update`` / ``models.lstm_update``,
shared with our own ensemble cells; the fused nn.LSTM kernel has no forward-mode AD on the CPU), and its
tangent map comes from one forward-mode AD pass. Also here: ``_prepare``, the one boundary where a
module's inputs and ``h0`` (in the module's own layout, see the package docstring) are validated and
made time-major and flat, and the checks of ``k`` every measurement shares.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.autograd.forward_ad as fwAD
from torch import nn

from ..lyapunov import random_orthonormal
from ..models import gru_update, lstm_update
from .tangents import cell_tangent

# module class -> (cell kind, is a single cell)
MODULES = {nn.RNN: ("rnn", False), nn.GRU: ("gru", False), nn.LSTM: ("lstm", False),
           nn.RNNCell: ("rnn", True), nn.GRUCell: ("gru", True), nn.LSTMCell: ("lstm", True)}


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
    return gru_update(_lin(x, w[0], w[2]), _lin(h, w[1], w[3]), h)


def _lstm_cell(x, h, c, w):
    return lstm_update(_lin(x, w[0], w[2]) + _lin(h, w[1], w[3]), c)


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
    torch 2.13 a binary op between a dual and a plain tensor takes a slow decomposed path, many times
    slower than a dual-dual op, which would make the tangent far slower than the step (bench/RESULTS.md).
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
    # an analytic tangent for the standard cells where tangents.py has one (issue 17, item 4), else one
    # forward-mode AD pass through the cell equations
    tangent = cell_tangent(cell_kind, weights, n_in, act) or _forward_tangent(cell_step, weights, n_in)
    return Stepper(step, state_from, state_to, dim, n_in, own, tangent)


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
