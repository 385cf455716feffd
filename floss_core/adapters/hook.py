"""Flossing inside the user's own training loop, in one line (issue 17, item 2): ``FlossingRegularizer``.

    reg = FlossingRegularizer(model, k=8, every=10, weight=0.01)  # the whole model, or model.rnn
    for x, y in batches:
        loss = loss_fn(model(x), y) + reg()                        # weight * flossing loss every 10th call
        ...
    reg.phase(steps=100, lr=1e-3)                                  # or a separate phase, before / between training

A forward hook on the recurrent module keeps, from the user's own forward pass, what the module really
got: its input (after the user's embedding, dropout, ...) and its initial state, a few sequences of
them, detached. ``reg()`` computes the flossing loss (Engelken, NeurIPS 2023, eq. 4) of that window
with the module's current weights (``window._window_loss``, as ``flossing_loss_term`` does), so nothing
is recomputed, no h0 is sliced by hand, and a last batch shorter than the transient still works.
"""
from __future__ import annotations

import math
import warnings

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from .regularizer import MAX_RISE, STATE_HORIZON, STOP_TOL, VALIDATE_EVERY, floss
from .resolve import resolve_module
from .stepper import _check_k, _kind, _prepare, module_step
from .window import _check_horizon, _window_loss

CELL_STEPS = 100   # a cell is called once per time step: the window it keeps is its last CELL_STEPS calls


# the term's default weight (see FlossingRegularizer.__init__)
WEIGHT = 0.01


def fitted_transient(transient: int | None, T: int) -> int:
    """The transient used on a window of T steps: ``min(10, T // 3)`` by default (None); a given one is cut
    to ``T // 2`` where it would leave less than half the window measured (a last, shorter batch)."""
    return min(10, T // 3) if transient is None else min(transient, T // 2)


def _state_sample(h, idx, batch_axis: int):
    """The sample ``idx`` of a module's state (a tensor or an LSTM's (h, c)), detached and copied."""
    if isinstance(h, tuple):
        return tuple(_state_sample(v, idx, batch_axis) for v in h)
    return h.detach().index_select(batch_axis, idx).clone()


def _zeros_state(module, kind, cell: bool, n: int, like: torch.Tensor):
    shape = (n, module.hidden_size) if cell else (module.num_layers, n, module.hidden_size)
    z = like.new_zeros(shape)
    return (z, z.clone()) if kind == "lstm" else z


class FlossingRegularizer:
    """Gradient flossing as a term of your own loss, fed by your own forward pass.

    Args:
      module: the nn.RNN / GRU / LSTM / RNNCell / GRUCell / LSTMCell, or the whole model (or a
        torch.compile / DataParallel wrapper) holding exactly one (``resolve.resolve_module``).
      k: exponents flossed (1..D, D = L·H, 2·L·H for an LSTM).
      every: ``reg()`` gives the term on every ``every``-th call (calls 0, every, 2·every, ...: M in the
        paper) and a zero tensor on the others.
      weight: the term is ``weight * flossing loss``.
      sample: sequences of the batch kept (the first ``sample``; the batch axis follows batch_first).
      transient: steps discarded at the window's start; None: ``min(10, T // 3)`` for a window of T
        steps; a given one is cut to T // 2 on a shorter window (``fitted_transient``).
      target, state_horizon, qr_every, seed: as for ``flossing_loss_term``.
      max_steps: the longest window kept, in steps: a full module's forward keeps its first
        ``max_steps`` steps (None: all); a cell (called once per step) its last ``max_steps`` calls
        of one unbroken sequence (None: ``CELL_STEPS``).
    The hook also runs in eval() mode, under torch.no_grad() and torch.inference_mode() (what it keeps
    is data); set ``reg.capturing = False`` to keep the current window through other forward passes
    (validation). A PackedSequence input is unpacked; the window is cut to the shortest sampled
    sequence. The term is computed in the module's dtype, also inside an autocast region.

    Attributes: ``inputs`` / ``h0`` (the window kept, in the module's own layout: (T, S, C) or
    (S, T, C) with batch_first, time-major for a cell; h0 as the module takes it, (L, S, H) or (h, c),
    (S, H) for a cell; None before a forward pass), ``calls`` (reg() calls so far), ``history`` (one
    dict per flossing loss computed: ``step`` (the reg() call, or the calls so far for a phase),
    ``kind`` ('term' or 'phase'), ``exponents`` (the window's first k, averaged over the sample),
    ``loss`` (the unweighted flossing loss), ``transient``, ``steps`` (T)).
    ``remove()`` takes the hook off; ``with FlossingRegularizer(...) as reg:`` removes it on exit.
    """

    # weight 0.01 by default: next to a cross-entropy of about 1 nat, 0.1 kept examples/lm_lstm.py's long-range
    # accuracy at chance (0.145-0.147, M = 10 and 50, two seeds); 0.01 did not (the README's advice)
    def __init__(self, module, *, k: int, every: int = 10, weight: float = WEIGHT, sample: int = 1,
                 transient: int | None = None, target: float = 0.0,
                 state_horizon: int | None = STATE_HORIZON, qr_every: int = 1,
                 max_steps: int | None = None, seed: int = 0):
        m = resolve_module(module)
        kind = _kind(m) if isinstance(m, nn.Module) else None
        if kind is None:
            raise ValueError(f"FlossingRegularizer hooks a torch nn.RNN / GRU / LSTM or one of their Cells "
                             f"(or a model holding one), got {type(m).__name__}; for a custom step map "
                             f"call flossing_loss_term(step, inputs, h0=...) in your loss")
        for name, v, lo in (("every", every, 1), ("sample", sample, 1), ("qr_every", qr_every, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        for name, v in (("transient", transient), ("max_steps", max_steps)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < (name == "max_steps")):
                raise ValueError(f"{name} must be an integer >= {int(name == 'max_steps')} or None, got {v!r}")
        if isinstance(weight, bool) or not (isinstance(weight, (int, float)) and math.isfinite(weight)
                                            and weight >= 0):
            raise ValueError(f"weight must be a number >= 0, got {weight!r}")
        _check_horizon(state_horizon)
        st = module_step(m)
        self.k = _check_k(k, st.dim)
        self.module, self.every, self.weight, self.sample = m, every, float(weight), sample
        self.transient, self.target, self.state_horizon = transient, float(target), state_horizon
        self.qr_every, self.seed = qr_every, seed
        self._cell_kind, self._cell = kind
        self.max_steps = max_steps if max_steps is not None or not self._cell else CELL_STEPS
        self.inputs, self.h0 = None, None
        self.calls, self.history = 0, []
        self._warned = False
        self.capturing = True                            # False: the hook keeps nothing (the window stays)
        self._steps, self._last_out = [], None          # a cell's kept calls: (x_t, hx_t) samples
        self._handle = m.register_forward_hook(self._capture, with_kwargs=True)

    # ------------------------------------------------------------------------ the hook
    def _capture(self, module, args, kwargs, output) -> None:
        if not self.capturing:
            return
        x = args[0] if args else kwargs.get("input")
        hx = args[1] if len(args) > 1 else kwargs.get("hx")
        if not isinstance(x, (torch.Tensor, PackedSequence)):
            return
        # copies made outside inference mode: a forward under torch.inference_mode() (Lightning's validation)
        # gives inference tensors, which no later flossing loss could be differentiated through
        with torch.inference_mode(False):
            (self._capture_cell if self._cell else self._capture_seq)(x, hx, output)

    def _capture_seq(self, x, hx, output) -> None:
        m, bf = self.module, self.module.batch_first
        lengths = None
        if isinstance(x, PackedSequence):   # unpacked in the batch's own order (hx is in that order too)
            x, lengths = pad_packed_sequence(x, batch_first=bf)
        x = x.detach()
        if x.dim() == 2:                    # unbatched (T, C), h (L, H): a batch of one
            x = x.unsqueeze(0 if bf else 1)
            hx = None if hx is None else tuple(h.unsqueeze(1) for h in hx) if isinstance(hx, tuple) \
                else hx.unsqueeze(1)
        b_axis = 0 if bf else 1
        idx = torch.arange(min(self.sample, x.shape[b_axis]), device=x.device)
        xs = x.index_select(b_axis, idx)
        T = xs.shape[1 - b_axis]
        if lengths is not None:
            T = int(lengths.index_select(0, idx.cpu()).min())
        if self.max_steps is not None:
            T = min(T, self.max_steps)
        xs = xs.narrow(1 - b_axis, 0, T).clone()
        h0 = _zeros_state(m, self._cell_kind, False, len(idx), xs) if hx is None else _state_sample(hx, idx, 1)
        self.inputs, self.h0 = xs, h0

    def _capture_cell(self, x, hx, output) -> None:
        x = x.detach()
        unbatched = x.dim() == 1
        if unbatched:
            x = x[None]
            hx = None if hx is None else tuple(h[None] for h in hx) if isinstance(hx, tuple) else hx[None]
            output = tuple(h[None] for h in output) if isinstance(output, tuple) else output[None]
        idx = torch.arange(min(self.sample, x.shape[0]), device=x.device)
        h = _zeros_state(self.module, self._cell_kind, True, len(idx), x) if hx is None else _state_sample(hx, idx, 0)
        flat = torch.cat(h, -1) if isinstance(h, tuple) else h
        # a new sequence: no state passed, another sample size, or a state that is not the last call's output
        if hx is None or self._last_out is None or self._last_out.shape != flat.shape \
                or not torch.equal(self._last_out, flat):
            self._steps = []
        self._steps.append((x.index_select(0, idx).clone(), h))
        del self._steps[:-self.max_steps]
        out = _state_sample(output, idx, 0)
        self._last_out = torch.cat(out, -1) if isinstance(out, tuple) else out
        self.inputs = torch.stack([s[0] for s in self._steps])           # (T, S, C)
        self.h0 = self._steps[0][1]

    # ------------------------------------------------------------------------ the term
    def window(self):
        """The window kept: ``(inputs, h0)`` in the module's own layout (see the class), or None."""
        return None if self.inputs is None else (self.inputs, self.h0)

    def steps(self) -> int:
        """T, the length of the window kept (0 before a forward pass)."""
        if self.inputs is None:
            return 0
        return self.inputs.shape[1 if (not self._cell and self.module.batch_first) else 0]

    def _zero(self) -> torch.Tensor:
        p = next(self.module.parameters())
        return torch.zeros((), dtype=p.dtype, device=p.device)

    def loss(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The flossing loss of the window kept with the module's current weights (unweighted,
        differentiable w.r.t. the module's parameters), its exponents (S, k) (detached) and the
        transient used. Needs a forward pass first."""
        if self.inputs is None:
            raise ValueError(f"nothing captured yet: run your model's forward pass once (the "
                             f"{type(self.module).__name__}'s input is kept from it)")
        transient = fitted_transient(self.transient, self.steps())
        st, xs, state0, _ = _prepare(self.module, self.inputs, self.h0)
        # in the module's own dtype even inside the user's autocast region: QR and the exponents' logs in
        # half precision would be noise (and torch has no half-precision QR)
        device = next(self.module.parameters()).device.type
        with torch.autocast(device_type=device, enabled=False):
            loss, lam, _ = _window_loss(st, xs, state0, k=self.k, transient=transient, qr_every=self.qr_every,
                                        target=self.target, Q0=None, seed=self.seed,
                                        state_horizon=self.state_horizon)
        return loss, lam, transient

    def __call__(self) -> torch.Tensor:
        """``weight * flossing loss`` of the window kept, on every ``every``-th call (0, every, ...);
        a zero scalar on the others, and before any forward pass was seen (said once, as a warning)."""
        i = self.calls
        self.calls += 1
        if i % self.every:
            return self._zero()
        if self.inputs is None:
            if not self._warned:
                warnings.warn(f"FlossingRegularizer: no forward pass of the {type(self.module).__name__} seen "
                              f"yet, so reg() is 0; call it after your model's forward", stacklevel=2)
                self._warned = True
            return self._zero()
        loss, lam, transient = self.loss()
        self._record(i, "term", lam, float(loss.detach()), transient, self.steps())
        return self.weight * loss

    def _record(self, step, kind, lam, loss, transient, T) -> None:
        lam = torch.as_tensor(lam)
        self.history.append({"step": step, "kind": kind, "exponents": lam.reshape(-1, lam.shape[-1]).mean(0).tolist(),
                             "loss": loss, "transient": transient, "steps": T})

    # ------------------------------------------------------------------------ the phase
    def phase(self, *, steps: int, lr: float = 1e-3, sampler=None, transient: int | None = None,
              validate=None, validate_every: int = VALIDATE_EVERY, max_rise: float = MAX_RISE,
              stop_tol: float | None = STOP_TOL, **floss_kwargs) -> dict:
        """A separate flossing phase (``floss``) on the window kept, before or between training.

        ``sampler(i) -> inputs`` (in the module's layout) gives a fresh window per step instead (then
        the windows start from zeros, each where the last ended); ``transient`` None is fitted to the
        window kept (or to the sampler's first window). ``validate``, ``validate_every``, ``max_rise``,
        ``stop_tol`` and any other keyword go to ``floss``, whose dict is returned; its last window's
        exponents go into ``history``. Flossing a trained model hurts it: pass ``validate``."""
        if sampler is None:
            if self.inputs is None:
                raise ValueError("nothing captured yet: run your model's forward pass once before "
                                 "reg.phase(), or pass sampler=")
            source, h0, T = self.inputs, self.h0, self.steps()
        else:
            if not callable(sampler):
                raise ValueError(f"sampler must be a callable i -> inputs, got {type(sampler).__name__}")
            first = sampler(0)
            bf = not self._cell and self.module.batch_first and first.dim() == 3
            T = first.shape[1 if bf else 0]
            source, h0 = (lambda i: first if i == 0 else sampler(i)), None
        used = fitted_transient(transient if transient is not None else self.transient, T)
        if validate is not None and callable(validate):
            user_validate = validate

            def validate():          # the validation forward passes keep the window as it is
                was, self.capturing = self.capturing, False
                try:
                    return user_validate()
                finally:
                    self.capturing = was
        floss_kwargs = {"k": self.k, "target": self.target, "state_horizon": self.state_horizon,
                        "qr_every": self.qr_every, "seed": self.seed, **floss_kwargs}
        out = floss(self.module, source, steps=steps, lr=lr, transient=used, h0=h0, validate=validate,
                    validate_every=validate_every, max_rise=max_rise, stop_tol=stop_tol, **floss_kwargs)
        if out["exponents"] is not None and out["loss"]:
            self._record(self.calls, "phase", out["exponents"], out["loss"][-1], used, T)
        return out

    # ------------------------------------------------------------------------ lifetime
    def remove(self) -> None:
        """Take the hook off the module (reg() then keeps using the last window kept)."""
        self._handle.remove()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def __repr__(self) -> str:
        return (f"FlossingRegularizer({type(self.module).__name__}, k={self.k}, every={self.every}, "
                f"weight={self.weight}, sample={self.sample}, calls={self.calls}, window={self.steps()} steps)")
