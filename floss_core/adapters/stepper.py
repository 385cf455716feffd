"""A user's module as a one-step map over ONE flat state vector (``module_step``, ``Stepper``).

``step(state (B, D), x (B, C)) -> state (B, D)``: all layers' hidden states (layer 0 first), then, for an
LSTM, all layers' cell states. It is stepped layer by layer with the module's own weights and the cell
equations of the PyTorch docs (the GRU and LSTM gates are ``models.gru_update`` / ``models.lstm_update``,
shared with our own ensemble cells; the fused nn.LSTM kernel has no forward-mode AD on the CPU), and its
tangent map is analytic for the standard cells (``tangents.cell_tangent``), forward-mode AD otherwise. Also here: ``_prepare``, the one boundary where a
module's inputs and ``h0`` (in the module's own layout, see the package docstring) are validated and
made time-major and flat, and the checks of ``k`` every measurement shares.

What the user passed is resolved first (``resolve.resolve_module``: a whole model, a subclass, a
torch.compile / DataParallel wrapper -> the recurrent module). Two things are said once per module, as a
UserWarning: dropout between layers is not applied (the map is the evaluation-mode dynamics), and a
float16 / bfloat16 module is computed in float32.
"""
from __future__ import annotations

import os
import sys
import warnings
import weakref
from typing import Callable, NamedTuple

import torch
import torch.autograd.forward_ad as fwAD
from torch import nn

from ..lyapunov import random_orthonormal
from ..models import gru_update, lstm_update
from .resolve import resolve_module, supported_type, unwrap
from .tangents import cell_tangent

# module class -> (cell kind, is a single cell)
MODULES = {nn.RNN: ("rnn", False), nn.GRU: ("gru", False), nn.LSTM: ("lstm", False),
           nn.RNNCell: ("rnn", True), nn.GRUCell: ("gru", True), nn.LSTMCell: ("lstm", True)}
# computed in float32: the CPU has no float16 / bfloat16 QR (geqrf), and the exponents need float32's range
LOW_PRECISION = (torch.float16, torch.bfloat16)
# modules already told about their dropout / their dtype (once per module, not once per call)
_told_dropout: weakref.WeakSet = weakref.WeakSet()
_told_dtype: weakref.WeakSet = weakref.WeakSet()
_HERE = os.path.dirname(os.path.abspath(__file__))


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
    module: object = None     # what is stepped: the resolved torch module, or the custom step map
    dtype: torch.dtype | None = None  # the dtype the map computes in (float32 for a float16/bfloat16 module)


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
    """(cell kind, is a cell) of a supported module (a subclass too), None for anything else.
    Call it on a resolved module (``resolve_module``)."""
    cls = supported_type(module)
    return None if cls is None else MODULES[cls]


def _tell_once(told: weakref.WeakSet, module, message: str) -> None:
    if module not in told:
        told.add(module)
        # point at the user's line: the first frame outside this package
        frame, level = sys._getframe(0), 1
        while frame.f_back is not None and os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == _HERE:
            frame, level = frame.f_back, level + 1
        warnings.warn(message, UserWarning, stacklevel=level)


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
        LSTMCell, a subclass of one, a whole model holding exactly one of them, any of these wrapped
        by torch.compile / DataParallel / DistributedDataParallel (``resolve.resolve_module``), or
        any callable ``step(state (..., D), x) -> state (..., D)`` (an nn.Module holding no
        recurrent module whose forward is such a map counts as one).
      params: tensors a flossing phase should update; default the module's parameters
        (a plain function has none: pass them here to floss it).
    Returns:
      a ``Stepper``: ``step``, ``state_from`` (module state -> flat (B, D)), ``state_to`` (its
      inverse), ``dim`` D = L·H (RNN, GRU) or 2·L·H (LSTM: h of every layer, then c of every layer),
      ``input_size``, ``params``, ``module`` (the resolved module) and ``dtype``. The step reads the
      module's parameters live, so in-place optimiser updates are seen and gradients flow into them.
      A float16 / bfloat16 module is stepped in float32 on a differentiable cast of its weights
      taken here (gradients reach its own parameters; build a new map after updating them, as every
      entry point does per call). Dropout between layers is not applied (evaluation-mode dynamics).
    """
    module = resolve_module(module)
    kind = _kind(module)
    own = tuple(params) if params is not None else \
        tuple(module.parameters()) if isinstance(module, nn.Module) else ()
    if kind is None:
        if not callable(module):
            raise ValueError(f"expected a torch.nn.RNN/GRU/LSTM, one of their Cells or a callable "
                             f"step(state, x) -> state, got {type(module).__name__}")
        identity = lambda s: s  # noqa: E731
        return Stepper(lambda s, x: module(s, x), identity, identity, None, None, own, None, module, None)
    cell_kind, cell = kind
    if not cell and module.bidirectional:
        raise ValueError("bidirectional modules have no forward-in-time dynamics to floss; use bidirectional=False")
    if getattr(module, "proj_size", 0):
        raise ValueError("LSTM with proj_size > 0 is not supported; use proj_size=0")
    weights = _layer_weights(module, cell)
    name = _describe(module)
    dtype = weights[0][0].dtype
    if dtype in LOW_PRECISION:  # cast here, so the analytic and the forward-mode tangent both get float32
        _tell_once(_told_dtype, module, f"the {name} is {str(dtype)[6:]}: it is measured in float32 on a cast of "
                   f"its weights (results are float32; gradients reach its own {str(dtype)[6:]} parameters)")
        weights = [tuple(None if t is None else t.float() for t in w) for w in weights]
        dtype = torch.float32
    if not cell and module.dropout > 0 and module.num_layers > 1 and module.training:
        _tell_once(_told_dropout, module, f"dropout={module.dropout:g} between layers is not applied: the "
                   f"exponents are the {name}'s evaluation-mode dynamics (measured with dropout off)")
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
    return Stepper(step, state_from, state_to, dim, n_in, own, tangent, module, dtype)


def _shape(t) -> str:
    return str(tuple(t.shape))


def _h0_form(st: Stepper, module, h0, batch_text: str):
    """The module's own h0 checked for form and sizes: returns (its tensors: (h,) or (h, c), batch or None
    when unbatched). ``batch_text`` is the inputs' batch as the messages show it ('20', 'B')."""
    cell_kind, cell = _kind(module)
    name, hidden = _describe(module), module.hidden_size
    layers = 1 if cell else module.num_layers
    if cell:
        batched, unbatched = f"(B, H) = ({batch_text}, {hidden})", f"(H,) = ({hidden},)"
        sizes = f"hidden_size={hidden}"
    else:
        batched, unbatched = f"(L, B, H) = ({layers}, {batch_text}, {hidden})", f"(L, H) = ({layers}, {hidden})"
        sizes = f"num_layers={layers}, hidden_size={hidden}"
    expected = unbatched if batch_text == "unbatched" else batched
    if cell_kind == "lstm":
        if isinstance(h0, torch.Tensor):
            raise ValueError(f"the {name} takes h0 as a pair (h0, c0), each {expected}; got one tensor "
                             f"{_shape(h0)}: pass (h0, torch.zeros_like(h0)) to start its cell state at zero")
        if not (isinstance(h0, (tuple, list)) and len(h0) == 2 and all(isinstance(t, torch.Tensor) for t in h0)):
            got = f"a {type(h0).__name__} of {len(h0)}" if isinstance(h0, (tuple, list)) else type(h0).__name__
            raise ValueError(f"the {name} takes h0 as a pair of tensors (h0, c0), each {expected}; got {got}")
        parts = tuple(h0)
    else:
        if isinstance(h0, (tuple, list)):
            hint = " (a pair (h, c) is an LSTM's)" if len(h0) == 2 else ""
            raise ValueError(f"the {name} takes h0 as one tensor {expected}; got a {type(h0).__name__} of "
                             f"{len(h0)}{hint}: pass the hidden state alone")
        if not isinstance(h0, torch.Tensor):
            raise ValueError(f"the {name} takes h0 as one tensor {expected}; got {type(h0).__name__}")
        parts = (h0,)
    ok_dims = (1, 2) if cell else (2, 3)
    for part, what in zip(parts, ("h0", "c0")):
        fits = part.dim() in ok_dims and part.shape[-1] == hidden and (cell or part.shape[0] == layers)
        if not fits:
            raise ValueError(f"{what} does not fit the {name} ({sizes}): expected {expected}"
                             f"{'' if expected == unbatched else f' or unbatched {unbatched}'}, got {_shape(part)}")
    if len(parts) == 2 and parts[0].shape != parts[1].shape:
        raise ValueError(f"h0 {_shape(parts[0])} and c0 {_shape(parts[1])} of the {name} differ: "
                         f"each must be {expected}")
    is_batched = parts[0].dim() == ok_dims[1]
    return parts, (parts[0].shape[-2] if is_batched else None)


def _check_layout(st: Stepper, module, inputs: torch.Tensor, h_batch: int | None, parts) -> None:
    """Refuse inputs whose layout h0 proves wrong: the batch axis disagrees with h0's batch."""
    cell = _kind(module)[1]
    name, c = _describe(module), st.input_size
    batch_first = not cell and module.batch_first
    if cell:
        order = f"the {name} is stepped over time-major inputs"
    else:
        order = (f"the {name} is batch-first (batch_first=True)" if batch_first
                 else f"the {name} is sequence-first (batch_first=False)")
    want = "(B, T, C) = ({b}, ?, {c})" if batch_first else "(T, B, C) = (?, {b}, {c})"
    want = want.format(b=h_batch, c=c)
    if h_batch is None:
        return
    if inputs.dim() == 2:
        if inputs.shape[0] == h_batch:
            one_step = "x.unsqueeze(1)" if batch_first else "x.unsqueeze(0)"
            raise ValueError(f"{order}: expected {want}; got {_shape(inputs)} with an h0 of batch {h_batch}, "
                             f"which looks like one step of the batch without a time axis: pass {one_step} "
                             "(one step) or the whole sequence")
        unb = "h0[0]" if cell else "h0[:, 0]"
        if len(parts) == 2:
            unb = f"({unb}, {unb.replace('h0', 'c0')})"
        raise ValueError(f"a 2-D input {_shape(inputs)} is one unbatched sequence (T, C), which takes an unbatched "
                         f"h0, but h0 has batch {h_batch}: pass h0={unb}, or batched inputs {want}")
    b_axis = 0 if batch_first else 1
    if inputs.shape[b_axis] == h_batch:
        return
    if inputs.shape[1 - b_axis] == h_batch:
        looks = "sequence-first" if batch_first else "batch-first"
        raise ValueError(f"{order}: expected {want}; got {_shape(inputs)}, which looks {looks}: "
                         "pass x.transpose(0, 1)")
    b = min(h_batch, inputs.shape[b_axis])
    xs = f"x[:{b}]" if batch_first else f"x[:, :{b}]"
    hs = f"h0[:{b}]" if cell else f"h0[:, :{b}]"
    if len(parts) == 2:
        hs = f"({hs}, {hs.replace('h0', 'c0')})"
    who = f"the {name} steps over" if cell else f"a {'batch' if batch_first else 'sequence'}-first {name} takes"
    raise ValueError(f"h0 has batch {h_batch} but the inputs have batch {inputs.shape[b_axis]} ({who} x as "
                     f"{'(B, T, C)' if batch_first else '(T, B, C)'}): give both one batch, e.g. {xs} and {hs}")


def _embedding_hint(passed) -> str:
    """', e.g. model.emb(tokens)' when the user passed a whole model holding an embedding."""
    passed = unwrap(passed)
    if not isinstance(passed, nn.Module) or supported_type(passed) is not None:
        return ""
    for name, sub in passed.named_modules():
        if isinstance(sub, nn.Embedding) and name:
            return f", e.g. model.{name}(tokens)"
    return ""


def _prepare(module, inputs, h0):
    """Validate once at the boundary. Returns (stepper, time-major inputs (T, B, C) or an int T,
    flat state0 (B, D), unbatched: bool). ``module`` is what the user passed (resolved here)."""
    passed = module
    st = module_step(module)
    module = st.module
    kind = _kind(module)
    if kind is None:  # a custom step map: time-major inputs, flat h0
        if h0 is None:
            what = (f"the {type(module).__name__} holds no nn.RNN / GRU / LSTM or *Cell, so it is read as"
                    if isinstance(module, nn.Module) else "it is")
            raise ValueError(f"{what} a custom step map step(state, x) -> state, and a custom step map needs h0, "
                             "its initial state of shape (..., D)")
        if isinstance(h0, (tuple, list)):
            raise ValueError(f"a custom step map takes h0 as one flat tensor (..., D); got a {type(h0).__name__} "
                             f"of {len(h0)}")
        h0 = torch.as_tensor(h0)
        steps = inputs if isinstance(inputs, int) else len(inputs)
        if steps < 1:
            raise ValueError(f"inputs must hold at least one time step, got {steps}")
        return st._replace(dim=h0.shape[-1]), inputs, h0, False
    p = next(iter(module.parameters()))
    dtype, device = st.dtype, p.device
    cell = kind[1]
    name = _describe(module)
    batch_first = not cell and module.batch_first
    layout = "(B, T, C)" if batch_first else "(T, B, C)"
    if isinstance(inputs, nn.utils.rnn.PackedSequence):
        raise ValueError(f"the {name} is measured on a padded tensor {layout}, got a PackedSequence: pass "
                         f"torch.nn.utils.rnn.pad_packed_sequence(x{', batch_first=True' if batch_first else ''})[0] "
                         "(padding steps are stepped too: measure a window without them)")
    if isinstance(inputs, bool) or not isinstance(inputs, (int, torch.Tensor)):
        raise ValueError(f"inputs must be a tensor or an int number of steps, got {type(inputs).__name__}")
    if isinstance(inputs, int):
        if inputs < 1:
            raise ValueError(f"inputs must hold at least one time step, got {inputs}")
        batch_text = "B"
    else:
        if not (inputs.is_floating_point() or inputs.is_complex()):
            raise ValueError(f"the {name} takes float inputs {layout} with C = input_size = {st.input_size}; got "
                             f"a tensor of dtype {str(inputs.dtype)[6:]} {_shape(inputs)} (token ids?): pass what feeds "
                             f"the {name}{_embedding_hint(passed)}")
        if inputs.dim() not in (2, 3):
            raise ValueError(f"inputs must be {layout}{' (batch_first)' if batch_first else ''} or (T, C) "
                             f"unbatched for the {name}, got shape {_shape(inputs)}")
        if inputs.shape[-1] != st.input_size:
            raise ValueError(f"inputs have {inputs.shape[-1]} channels, the {name} expects "
                             f"input_size={st.input_size}")
        batch_text = "unbatched" if inputs.dim() == 2 else str(inputs.shape[0 if batch_first else 1])
    parts, h_batch = (None, None) if h0 is None else _h0_form(st, module, h0, batch_text)
    if isinstance(inputs, int):
        xs, unbatched, batch = inputs, False, h_batch
    else:
        _check_layout(st, module, inputs, h_batch, parts)
        unbatched = inputs.dim() == 2
        xs = inputs[:, None] if unbatched else inputs.transpose(0, 1) if batch_first else inputs
        if xs.shape[0] < 1:
            raise ValueError("inputs must hold at least one time step, got 0")
        xs = xs.to(dtype=dtype, device=device)
        batch = xs.shape[1]
    if h0 is None:
        state0 = torch.zeros(batch or 1, st.dim, dtype=dtype, device=device)
    else:
        state0 = st.state_from(parts if len(parts) == 2 else parts[0]).to(dtype=dtype, device=device)
        if state0.dim() == 1:   # an unbatched h0: the same start for every sequence of the batch
            state0 = state0.expand(batch or 1, st.dim)
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
