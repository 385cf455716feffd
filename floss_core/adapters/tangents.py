"""Analytic tangent maps of the standard cells (nn.RNN / GRU / LSTM and their Cells, any number of layers):
``cell_tangent`` returns ``(state, x, new_state, Q (..., D, k)) -> D_t Q`` written in plain torch ops, so
reverse mode runs through it (flossing differentiates the exponents w.r.t. the weights through the
tangents); ``stepper`` falls back to forward-mode AD for anything else.

The flat state is stepper's: all layers' h (layer 0 first), then for an LSTM all layers' c. Layer l > 0
is driven by the NEW h of layer l-1, so its tangent adds W_ih_l (tangent of the new h_{l-1}).

Each step is split in two: ``coefficients(state, x)`` re-runs the cell equations (one batch-1 matmul per
weight) and keeps the element-wise derivative factors of every gate; ``apply(coeffs, V)`` pushes tangent
columns V (..., D, m) through them. Both broadcast over any leading dimensions, so a whole window's
factors come from one batched pass over its T steps: ``layers(states, xs)`` gives every step's per-layer
Jacobians (w.r.t. a layer's own h and its input, built one block of the identity at a time; an LSTM's
as one batched matmul of the gate factors with the weight's gate blocks, its cell-state columns diagonal,
travelling as two vectors), which
``window._window_loss`` hands to ``fastqr.layered_tangent_logs``; ``jacobian`` gives the full D_t;
``window`` the per-step maps for ``lyapunov_spectrum``; ``states_at`` the trajectory's no-grad restart
states (bench/RESULTS.md, "Flossing a user's module").

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

import warnings

import torch

from ..models import gru_update, lstm_update


def _lin(x, w, b):
    y = x @ w.mT
    return y if b is None else y + b


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
    # The tangent columns are carried as rows (..., m, H) inside: then every weight product is
    # ``v @ Wᵀ`` with the leading dimensions folded into one matmul (a weight on the left of a batch of
    # blocks makes torch.matmul copy the weight out to the batch first).
    def apply(self, coeffs, V):
        """D_t V for tangent columns V (..., D, m) (or (D, m), broadcast), from ``coefficients``."""
        return torch.cat(self._propagate(coeffs, list(V.mT.split(self.hidden, dim=-1))), dim=-1).mT

    def _propagate(self, coeffs, vs):
        """The tangent's blocks (h of each layer, then c of each layer) from the input's, each as rows
        (..., m, H), ``None`` for zero or ``EYE`` for the identity."""
        L = self.n_layers
        hs, cs, prev = [], [], None        # prev: the tangent of the new h of the layer below
        for l, co in enumerate(coeffs):
            dh, dc = self._layer(l, co, vs[l], vs[L + l] if self.kind == "lstm" else None, prev)
            hs.append(dh)
            cs += [dc] if self.kind == "lstm" else []
            prev = dh
        return hs + cs

    def _layer(self, l, co, vh, vc, prev):
        """Layer l's new (dh, dc) (dc None but for an LSTM) from its own (vh, vc) and its input's tangent
        ``prev``, all as rows (..., m, H), ``None`` for zero or ``EYE`` for the identity (so that the
        explicit Jacobians are built one block at a time without multiplying the zeros of I)."""
        w_ih, w_hh = self.weights[l][:2]
        H = self.hidden
        if self.kind == "rnn":
            return _cols(co[0], _add(_mm(vh, w_hh), _mm(prev, w_ih))), None
        if self.kind == "gru":
            on_h, on_i, z = co
            p = _add(_cols(on_h, _mm(vh, w_hh)), _cols(on_i, _mm(prev, w_ih)))
            return _add(None if p is None else p.unflatten(-1, (3, H)).sum(-2), _cols(z, vh)), None
        coef, sf, u = co
        a = _add(_mm(vh, w_hh), _mm(prev, w_ih))
        # split before scaling (a slice of the product would zero-fill a full-size gradient)
        a_ifg, a_o = (None, None) if a is None else a.split([3 * H, H], dim=-1)
        c_ifg, c_o = coef.split([3 * H, H], dim=-1)
        p = _cols(c_ifg, a_ifg)
        dc = _add(None if p is None else p.unflatten(-1, (3, H)).sum(-2), _cols(sf, vc))
        return _add(_cols(c_o, a_o), _cols(u, dc)), dc

    @torch.no_grad()
    def states_at(self, state0, xs, every: int) -> list:
        """The flat states (B, D) after steps every, 2·every, ... (< T) from state0 (B, D) on inputs xs
        (T, B, C), without gradient: torch's own fused sequence op (what nn.RNN / GRU / LSTM.forward call,
        ``torch.rnn_tanh`` / ``rnn_relu`` / ``gru`` / ``lstm``) over the whole window, one call per layer
        (``_fused``); where that op is missing, ``_states_at`` (the cell equations in Python)."""
        H, L = self.hidden, self.n_layers
        op = getattr(torch, {"rnn": "rnn_relu" if self.relu else "rnn_tanh"}.get(self.kind, self.kind), None)
        if op is None or xs.dim() != 3:
            return self._states_at(state0, xs, every)
        bias = self.weights[0][2] is not None
        flat = [w for layer in self.weights for w in (layer if bias else layer[:2])]

        def layered(flat_part):          # (B, L·H) -> (L, B, H), the module's own layout
            return flat_part.unflatten(-1, (L, H)).movedim(-2, 0).contiguous()
        h = layered(state0[..., :L * H])
        c = layered(state0[..., L * H:]) if self.kind == "lstm" else None
        with warnings.catch_warnings():   # cuDNN: "weights are not part of single contiguous chunk" (a copy)
            warnings.filterwarnings("ignore", message=".*contiguous chunk.*")
            return self._fused(op, xs, h, c, flat, bias, every)

    def _fused(self, op, xs, h, c, flat, bias, every):
        # layer by layer, ONE call of the fused op over the whole window (its output: every step's h; the
        # op's cost is mostly per call, ~0.1 ms, so not one call per stretch); an LSTM's c, which the op
        # returns for the last step only, from the gates of every step (one batched pass over the op's h)
        # and c_t = σ_f c_{t-1} + σ_i tanh g, one product per step up to the last cut
        L, T = self.n_layers, xs.shape[0]
        cuts = list(range(every - 1, T - 1, every))
        if not cuts:
            return []
        per = len(flat) // L
        inp, hs, cs = xs, [], []
        for l in range(L):
            w = flat[l * per:(l + 1) * per]
            if self.kind == "lstm":
                seq = op(inp, (h[l:l + 1], c[l:l + 1]), w, bias, 1, 0.0, False, False, False)[0]
                w_ih, w_hh, b_ih, b_hh = self.weights[l]
                prev = torch.cat([h[l][None], seq[:cuts[-1]]])              # h before steps 0..last cut
                gi, gf, gg, _ = (_lin(inp[:cuts[-1] + 1], w_ih, b_ih) + _lin(prev, w_hh, b_hh)).chunk(4, dim=-1)
                f, ig = torch.sigmoid(gf), torch.sigmoid(gi) * torch.tanh(gg)
                cc, cl = c[l], []
                for t in range(cuts[-1] + 1):
                    cc = torch.addcmul(ig[t], f[t], cc)
                    cl.append(cc)
                cs.append([cl[t] for t in cuts])
            else:
                seq = op(inp, h[l:l + 1], w, bias, 1, 0.0, False, False, False)[0]
            hs.append(seq[cuts].unbind(0))
            inp = seq
        return [torch.cat([hs[l][j] for l in range(L)] + [cs[l][j] for l in range(len(cs))], dim=-1)
                for j in range(len(cuts))]

    @torch.no_grad()
    def _states_at(self, state0, xs, every: int) -> list:
        """``states_at`` from the cell equations: layer by layer over the whole window, the input drive of
        a layer as one matmul for all T steps and each step one addmm and the gate update
        (``models.gru_update`` / ``lstm_update``)."""
        H, L, T = self.hidden, self.n_layers, xs.shape[0]
        cuts = list(range(every - 1, T - 1, every))
        inp, hs, cs = xs, [], []
        for l, (w_ih, w_hh, b_ih, b_hh) in enumerate(self.weights):
            drive = _lin(inp, w_ih, b_ih)                                   # (T, B, G)
            if self.kind != "gru" and b_hh is not None:
                drive = drive + b_hh
            h = state0[..., l * H:(l + 1) * H]
            c = state0[..., (L + l) * H:(L + l + 1) * H] if self.kind == "lstm" else None
            seq, cc = [], []
            for t in range(T):
                if self.kind == "rnn":
                    h = (torch.relu if self.relu else torch.tanh)(torch.addmm(drive[t], h, w_hh.mT))
                elif self.kind == "gru":
                    h = gru_update(drive[t], _lin(h, w_hh, b_hh), h)
                else:
                    h, c = lstm_update(torch.addmm(drive[t], h, w_hh.mT), c)
                    cc.append(c)
                seq.append(h)
            hs.append([seq[t] for t in cuts])
            cs.append([cc[t] for t in cuts] if cc else [])
            inp = torch.stack(seq)
        return [torch.cat([hs[l][j] for l in range(L)] + [cs[l][j] for l in range(L) if cs[l]], dim=-1)
                for j in range(len(cuts))]

    def layers(self, states, xs):
        """The window's per-layer Jacobians for ``fastqr.layered_tangent_logs``, from ONE batched pass over
        its states (T, ..., D) (the state each step starts from) and inputs (T, ..., C):
        ``(As, Bs, cells, order)``. As[l] (T, ..., n, H): layer l's Jacobian w.r.t. its own h (n = H, or 2H
        for an LSTM: rows h' then c'); Bs[l-1] (T, ..., n, H) w.r.t. its input (the new h of layer l-1);
        cells (LSTM, else None): cells[l] (T, ..., 2, H), the diagonal Jacobians of h' and c' w.r.t. the
        layer's c (σ_o tanh'(c') σ_f and σ_f); ``order``: the flat state's indices in the layer-major order
        (h_0, c_0, h_1, c_1, ...), None where that is the flat order."""
        coeffs = self.coefficients(states, xs)
        H, lstm = self.hidden, self.kind == "lstm"
        lead = torch.broadcast_shapes(states.shape[:-1], xs.shape[:-1])
        if lstm:
            return self._lstm_layers(coeffs, lead)

        def column(blocks):                # the derivatives by one source (rows of Jᵀ) -> (..., n, H)
            return torch.cat([b.expand(*lead, H, H) for b in blocks if b is not None], dim=-1).mT
        As = [column(self._layer(l, co, EYE, None, None)) for l, co in enumerate(coeffs)]
        Bs = [column(self._layer(l, co, None, None, EYE)) for l, co in enumerate(coeffs) if l]
        return As, Bs, None, None

    def _lstm_layers(self, coeffs, lead):
        """``layers`` for an LSTM: every row of a layer's Jacobian w.r.t. a source (its h, or its input) is
        a combination of the same row of the four gate blocks W_g of that source's weight,
        ``J[.., r, i, :] = Σ_g K[.., r, g, i] W_g[i, :]`` (rows r: h' then c'; K the gate factors: for c'
        (c_i, c_f, c_g, 0), for h' (u c_i, u c_f, u c_g, c_o), u = σ_o tanh'(c')): ONE batched matmul over
        the rows i, (T·2, 4) @ (4, n), instead of element-wise products of the weight by every step's
        factors (whose autograd backward is a broadcast product and a reduction per factor)."""
        H, L = self.hidden, self.n_layers
        n_lead = 1
        for d in lead:
            n_lead *= d
        As, Bs, cells = [], [], []
        for l, (coef, sf, u) in enumerate(coeffs):
            c4 = coef.unflatten(-1, (4, H))                                   # (..., 4, H): i, f, g, o
            k_h = torch.cat([c4[..., :3, :] * u.unsqueeze(-2), c4[..., 3:, :]], dim=-2)
            k_c = torch.cat([c4[..., :3, :], torch.zeros_like(c4[..., 3:, :])], dim=-2)
            # (rows i, T·2, gates): the batch of the matmul is the row, contiguous for bmm
            K = torch.stack([k_h, k_c], dim=-3).expand(*lead, 2, 4, H).reshape(n_lead * 2, 4, H)
            K = K.permute(2, 0, 1).contiguous()
            w_ih, w_hh = self.weights[l][:2]
            As.append(_gate_rows(K, w_hh, lead, H))
            if l:
                Bs.append(_gate_rows(K, w_ih, lead, H))
            cells.append(torch.stack([u * sf, sf], dim=-2).expand(*lead, 2, H))
        order = None
        if L > 1:
            order = torch.cat([torch.arange(o * H, (o + 1) * H) for l in range(L) for o in (l, L + l)])
        return As, Bs, cells, order

    def __call__(self, state, x, new, Q):
        return self.apply(self.coefficients(state, x), Q)

    def window(self, states, xs, *, explicit: bool = False) -> list:
        """The T per-step maps ``Q -> D_t Q`` of a window, from ONE batched pass of ``coefficients`` over
        its states (T, ..., D) (the state each step starts from) and inputs xs (T, ..., C): the cell
        equations and their derivative factors for all steps at once, leaving only the k-column matmuls
        and element-wise products per step. ``explicit``: build each D_t (T, ..., D, D) and apply it as
        one matmul instead."""
        if explicit:
            return [J.__matmul__ for J in self.jacobian(states, xs).unbind(0)]
        coeffs = self.coefficients(states, xs)
        # unbind, not indexing: one backward node per tensor for the whole window, not one zero-filled
        # (T, ...) gradient per step
        per_step = list(zip(*[tuple(zip(*[c.unbind(0) for c in layer])) for layer in coeffs]))
        return [lambda Q, co=co: self.apply(co, Q) for co in per_step]

    def jacobian(self, state, x):
        """The explicit one-step Jacobians D_t (..., D, D) at (state (..., D), x (..., C) or None), one
        block (h or c of one layer) of columns at a time (a transposed view of a contiguous Dᵀ)."""
        coeffs = self.coefficients(state, x)
        H, nb = self.hidden, self.dim // self.hidden
        lead = torch.broadcast_shapes(state.shape[:-1], () if x is None else x.shape[:-1])
        rows = []                          # row j of Dᵀ: the derivatives by block j of the state
        for j in range(nb):
            blocks = self._propagate(coeffs, [EYE if i == j else None for i in range(nb)])
            rows.append(torch.cat([state.new_zeros(*lead, H, H) if r is None else r.expand(*lead, H, H)
                                   for r in blocks], dim=-1))
        return torch.cat(rows, dim=-2).mT


EYE = object()   # the identity block in CellTangent._propagate


def _mm(v, w):
    # the rows v (..., m, H) of a block through a weight w (G, H): v Wᵀ (..., m, G)
    if v is None:
        return None
    return w.mT.contiguous() if v is EYE else v @ w.mT   # contiguous: the products with it vectorise


def _cols(c, v):
    # v diag(c) for c (..., G) and rows v (..., m, G)
    if v is None:
        return None
    return torch.diag_embed(c) if v is EYE else c.unsqueeze(-2) * v


def _gate_rows(K, w, lead, H):
    # (..., 2H, n): row (r, i) = Σ_g K[i, (.., r), g] W_g[i, :] for K (H, N·2, 4) and w (4H, n)
    Wp = w.unflatten(0, (4, H)).transpose(0, 1).contiguous()          # (H, 4, n)
    return torch.bmm(K, Wp).transpose(0, 1).reshape(*lead, 2 * H, w.shape[-1])


def _add(a, b):
    return b if a is None else a if b is None else a + b


def cell_tangent(kind: str, weights: list, n_in: int, act):
    """The analytic tangent map of one step of the layered cell ``kind`` ('rnn', 'gru', 'lstm') with
    per-layer ``weights`` (weight_ih, weight_hh, bias_ih or None, bias_hh or None) (the module's own
    tensors, read live), input size ``n_in`` and, for 'rnn', ``act`` torch.tanh or torch.relu: a
    ``CellTangent``, or None for anything else (then stepper uses forward-mode AD)."""
    if kind not in ("rnn", "gru", "lstm") or (kind == "rnn" and act not in (torch.tanh, torch.relu)):
        return None
    return CellTangent(kind, weights, n_in, act)
