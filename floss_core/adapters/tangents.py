"""Analytic tangent maps of the standard cells (nn.RNN / GRU / LSTM and their Cells, any number of layers):
``cell_tangent`` returns ``(state, x, new_state, Q (..., D, k)) -> D_t Q`` written in plain torch ops, so
reverse mode runs through it (flossing differentiates the exponents w.r.t. the weights through the
tangents); ``stepper`` falls back to forward-mode AD for anything else.

The flat state is stepper's: all layers' h (layer 0 first), then for an LSTM all layers' c. Layer l > 0
is driven by the NEW h of layer l-1, so its tangent adds W_ih_l (tangent of the new h_{l-1}).

Each step is split in two: ``coefficients(state, x)`` re-runs the cell equations (one batch-1 matmul per
weight) and keeps the element-wise derivative factors of every gate; ``apply(coeffs, V)`` pushes tangent
columns V (..., D, m) through them. Both broadcast over any leading dimensions, so a whole window's
factors come from one batched pass over its T steps, and ``apply`` to the identity gives the explicit
one-step Jacobians D_t (T, ..., D, D): ``jacobian(states, xs)``, which ``window._window_loss`` uses to make
each step of the flossing window one matmul (bench/RESULTS.md, "Flossing a user's module").

Derivatives (σ' = σ(1-σ), tanh' = 1 - tanh²; gates as in the PyTorch docs, ``models.gru_update`` /
``models.lstm_update``), with dgi = W_ih d(input), dgh = W_hh dh:
  RNN   h' = act(W_ih x + b_ih + W_hh h + b_hh):  dh' = act'(·) ⊙ (dgi + dgh)
        (relu' = 1 where h' > 0, as torch's own relu backward)
  GRU   r = σ(i_r + h_r), z = σ(i_z + h_z), n = tanh(i_n + r ⊙ h_n), h' = (1-z) ⊙ n + z ⊙ h:
        dh' = c_r ⊙ (dgi_r + dgh_r) + c_z ⊙ (dgi_z + dgh_z) + c_in ⊙ dgi_n + c_hn ⊙ dgh_n + z ⊙ dh,
        c_r = (1-z) n' h_n r', c_z = (h - n) z', c_in = (1-z) n', c_hn = c_in r   (n' = 1 - n²)
  LSTM  c' = σ_f c + σ_i tanh g, h' = σ_o tanh c', da = dgi + dgh:
        dc' = tanh g σ_i' da_i + c σ_f' da_f + σ_i tanh' g da_g + σ_f dc,
        dh' = tanh c' σ_o' da_o + σ_o tanh'(c') dc'
Tested against ``torch.func.jacrev`` of the step and the forward-mode path in tests/test_tangents.py.
"""
from __future__ import annotations

import torch


def _lin(x, w, b):
    y = x @ w.mT
    return y if b is None else y + b


def _mat(w, v):
    # w (G, H) applied to tangent columns v (..., H, m)
    return w @ v


class CellTangent:
    """The analytic tangent map of one step of a layered cell over the flat state (see the module doc).

    Called as ``(state (..., D), x (..., C) or None, new_state (ignored, may be None), Q (..., D, k))
    -> D_t Q (..., D, k)``, the signature of ``lyapunov_spectrum``'s ``jacobian``. The tangent depends on
    (state, x) only: the gates are recomputed from them, so the gradient flows where forward-mode AD's
    does (into the state the step started from), whatever ``new_state`` is or how it was detached."""

    def __init__(self, kind: str, weights: list, n_in: int, act):
        if kind not in ("rnn", "gru", "lstm"):
            raise ValueError(f"unknown cell kind {kind!r}; choose one of rnn, gru, lstm")
        self.kind, self.weights, self.n_in = kind, weights, n_in
        self.relu = act is torch.relu
        self.n_layers = len(weights)
        self.hidden = weights[0][1].shape[-1]
        self.dim = self.n_layers * self.hidden * (2 if kind == "lstm" else 1)

    # ------------------------------------------------------------------ derivative factors
    def coefficients(self, state, x):
        """Per layer, the element-wise factors of its one-step tangent at (state, x); any leading dims."""
        H, L = self.hidden, self.n_layers
        if x is None:
            x = state.new_zeros(*state.shape[:-1], self.n_in)
        inp, out = x, []
        for l, (w_ih, w_hh, b_ih, b_hh) in enumerate(self.weights):
            h = state[..., l * H:(l + 1) * H]
            if self.kind == "rnn":
                pre = _lin(inp, w_ih, b_ih) + _lin(h, w_hh, b_hh)
                if self.relu:
                    new = torch.relu(pre)
                    s = (pre > 0).to(pre.dtype)
                else:
                    new = torch.tanh(pre)
                    s = 1 - new * new
                out.append((s,))
            elif self.kind == "gru":
                gi, gh = _lin(inp, w_ih, b_ih), _lin(h, w_hh, b_hh)
                ir, iz, i_n = gi.chunk(3, dim=-1)
                hr, hz, hn = gh.chunk(3, dim=-1)
                r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
                n = torch.tanh(i_n + r * hn)
                new = (1 - z) * n + z * h
                c_in = (1 - z) * (1 - n * n)
                c_r = c_in * hn * r * (1 - r)
                c_z = (h - n) * z * (1 - z)
                out.append((torch.cat([c_r, c_z, c_in * r], dim=-1),      # on dgh
                            torch.cat([c_r, c_z, c_in], dim=-1),          # on dgi
                            z))
            else:
                c = state[..., (L + l) * H:(L + l + 1) * H]
                gates = _lin(inp, w_ih, b_ih) + _lin(h, w_hh, b_hh)
                gi, gf, gg, go = gates.chunk(4, dim=-1)
                si, sf, tg, so = torch.sigmoid(gi), torch.sigmoid(gf), torch.tanh(gg), torch.sigmoid(go)
                c_new = sf * c + si * tg
                tc = torch.tanh(c_new)
                new = so * tc
                coef = torch.cat([tg * si * (1 - si), c * sf * (1 - sf), si * (1 - tg * tg),
                                  tc * so * (1 - so)], dim=-1)
                out.append((coef, sf, so * (1 - tc * tc)))
            inp = new
        return out

    # ------------------------------------------------------------------ tangent columns
    def apply(self, coeffs, V):
        """D_t V for tangent columns V (..., D, m) (or (D, m), broadcast), from ``coefficients``."""
        H, L = self.hidden, self.n_layers
        hs, cs, prev = [], [], None        # prev: the tangent of the new h of the layer below
        for l, ((w_ih, w_hh, _, _), co) in enumerate(zip(self.weights, coeffs)):
            vh = V[..., l * H:(l + 1) * H, :]
            if self.kind == "rnn":
                a = _mat(w_hh, vh) if prev is None else _mat(w_hh, vh) + _mat(w_ih, prev)
                dh = co[0].unsqueeze(-1) * a
            elif self.kind == "gru":
                on_h, on_i, z = co
                p = on_h.unsqueeze(-1) * _mat(w_hh, vh)
                if prev is not None:
                    p = p + on_i.unsqueeze(-1) * _mat(w_ih, prev)
                dh = p.unflatten(-2, (3, H)).sum(-3) + z.unsqueeze(-1) * vh
            else:
                coef, sf, u = co
                vc = V[..., (L + l) * H:(L + l + 1) * H, :]
                a = _mat(w_hh, vh) if prev is None else _mat(w_hh, vh) + _mat(w_ih, prev)
                p = (coef.unsqueeze(-1) * a).unflatten(-2, (4, H))
                dc = p[..., :3, :, :].sum(-3) + sf.unsqueeze(-1) * vc
                dh = p[..., 3, :, :] + u.unsqueeze(-1) * dc
                cs.append(dc)
            hs.append(dh)
            prev = dh
        return torch.cat(hs + cs, dim=-2)

    def __call__(self, state, x, new, Q):
        return self.apply(self.coefficients(state, x), Q)

    def window(self, states, xs, *, explicit: bool = False) -> list:
        """The T per-step maps ``Q -> D_t Q`` of a window, from ONE batched pass of ``coefficients`` over
        its states (T, ..., D) (the state each step starts from) and inputs xs (T, ..., C): the cell
        equations and their derivative factors for all steps at once, leaving only the k-column matmuls
        and element-wise products per step. ``explicit``: build each D_t (T, ..., D, D) and apply it as
        one matmul instead."""
        coeffs = self.coefficients(states, xs)
        if explicit:
            eye = torch.eye(self.dim, dtype=states.dtype, device=states.device)
            return [J.__matmul__ for J in self.apply(coeffs, eye).unbind(0)]
        # unbind, not indexing: one backward node per tensor for the whole window, not one zero-filled
        # (T, ...) gradient per step
        per_step = list(zip(*[tuple(zip(*[c.unbind(0) for c in layer])) for layer in coeffs]))
        return [lambda Q, co=co: self.apply(co, Q) for co in per_step]

    def jacobian(self, state, x):
        """The explicit one-step Jacobians D_t (..., D, D) at (state (..., D), x (..., C) or None)."""
        return self.apply(self.coefficients(state, x),
                          torch.eye(self.dim, dtype=state.dtype, device=state.device))


def cell_tangent(kind: str, weights: list, n_in: int, act):
    """The analytic tangent map of one step of the layered cell ``kind`` ('rnn', 'gru', 'lstm') with
    per-layer ``weights`` (weight_ih, weight_hh, bias_ih or None, bias_hh or None) (the module's own
    tensors, read live), input size ``n_in`` and, for 'rnn', ``act`` torch.tanh or torch.relu: a
    ``CellTangent``, or None for anything else (then stepper uses forward-mode AD)."""
    if kind not in ("rnn", "gru", "lstm") or (kind == "rnn" and act not in (torch.tanh, torch.relu)):
        return None
    return CellTangent(kind, weights, n_in, act)
