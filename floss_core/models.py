"""Recurrent cells as one-step maps over an ensemble of E independent networks.

Every architecture is an entry ``Arch`` of the flat registry ``ARCHS``, three plain functions at heart:

* ``init(cfg, n_in, n_out, generator) -> params`` for ONE network (no E dimension),
* ``drive(params, inputs) -> u``: the input-dependent part of the update, computed for all time
  steps at once (one big matmul instead of T small ones),
* ``step(params, state, u) -> state``: the recurrent part, batched over (E, B);

beside them its one-step Jacobian (or None: forward-mode JVPs) and readout state, and the optional
fast paths, each the same numbers as the generic code it replaces (tests compare): ``run`` (the state
sequence in one kernel with hand-written BPTT), ``readouts`` (the task's forward pass in one kernel),
``step_all`` (every step of a given trajectory at once) and ``fused_lyapunov`` (the flossing window
kernel). Only the vanilla RNN has them; callers ask the entry instead of testing the architecture's name.

Parameters of an ensemble are the per-network tensors stacked along a leading dimension E
(``init_ensemble``), so E seeds run as one batched computation; E = 1 is the ordinary case.
States are single tensors of shape (E, B, D): the LSTM's (h, c) is stored concatenated, D = 2N, so its
tangent space has dimension 2N and every spectrum routine sees one uniform state layout.

The vanilla RNN is the model of Engelken (NeurIPS 2023) in its reference form
``x_t = J tanh(x_{t-1}) + b + W_in s_t / C`` with the logit readout ``r_t = w_out x_t + c``;
its one-step Jacobian ``∂x_t/∂x_{t-1} = J diag(1 - tanh²(x_{t-1}))`` is written by hand because it is
cheap (tests check it against ``torch.func.jacrev``). GRU and LSTM follow ``torch.nn.GRUCell`` /
``torch.nn.LSTMCell`` exactly (same gate order), and their tangents come from forward-mode JVPs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import native


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "rnn"          # rnn | gru | lstm
    hidden: int = 80           # N, hidden units (the LSTM's state dimension is 2N)
    gain: float = 1.0          # g: recurrent weights ~ N(0, g²/N) (rnn) or g × PyTorch's default (gru, lstm)
    orthogonal: bool = False   # rnn only: J = g × a random orthogonal matrix instead of Gaussian
    bias: bool = True          # include the recurrent bias b (rnn) / b_ih, b_hh (gru, lstm)
    relax_steps: int = 100     # steps the autonomous net runs from Gaussian noise to set the initial state


# ---------------------------------------------------------------------------------------------- rnn
def _rnn_init(cfg: ModelConfig, n_in: int, n_out: int, gen: torch.Generator) -> dict:
    n = cfg.hidden
    if cfg.orthogonal:
        q, r = torch.linalg.qr(torch.randn(n, n, generator=gen))
        J = cfg.gain * q * torch.sign(torch.diagonal(r))  # sign fix: Haar-distributed
    else:
        J = cfg.gain * torch.randn(n, n, generator=gen) / math.sqrt(n)
    p = {"J": J, "W_in": torch.randn(n, n_in, generator=gen)}
    if cfg.bias:
        p["b"] = 0.1 * torch.rand(n, generator=gen)
    return p


def member_linear(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None, scale: float = 1.0) -> torch.Tensor:
    """W x / scale + b per member: x (..., E, B, C), W (E, G, C), b (E, G) or None -> (..., E, B, G).

    One batched matmul per member over [x | 1] and [W / scale | b], so the weight and bias gradients are
    batched matmuls too. (An einsum plus a broadcast bias reduces their gradients over outer
    dimensions, whose summation order depends on how many members share the ensemble: a network's
    numbers would then depend on its neighbours, its process and its cluster layout.)"""
    e, nb, c = x.shape[-3:]
    lead = x.shape[:-3]
    xe = x.movedim(-3, 0).reshape(e, -1, c)
    Wa = W / scale if scale != 1 else W
    if b is not None:
        xe = torch.cat([xe, torch.ones(xe.shape[:-1] + (1,), dtype=xe.dtype, device=xe.device)], -1)
        Wa = torch.cat([Wa, b[:, :, None]], -1)
    return torch.bmm(xe, Wa.mT).view((e,) + lead + (nb, W.shape[1])).movedim(0, -3)


def _rnn_drive(p: dict, inputs: torch.Tensor) -> torch.Tensor:
    # inputs (T, E, B, C) -> u (T, E, B, N) = W_in s / C + b
    return member_linear(inputs, p["W_in"], p.get("b"), inputs.shape[-1])


def _rnn_step(p: dict, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    # x (E, B, N): x_t = J tanh(x_{t-1}) + u_t
    return torch.baddbmm(u, torch.tanh(x), p["J"].transpose(1, 2))


def _rnn_jacobian(p: dict, x_prev: torch.Tensor, u, x_new, Q: torch.Tensor) -> torch.Tensor:
    """D_t Q with D_t = J diag(1 - tanh²(x_{t-1})): the derivative of tanh at the PREVIOUS state,
    because this is the map on x (the paper's rate-map form diag(1 - tanh²(x_t)) J has the same exponents).
    Q (E, B, N, k) -> (E, B, N, k)."""
    sech2 = 1.0 - torch.tanh(x_prev) ** 2
    return p["J"][:, None] @ (sech2[..., None] * Q)


class _RNNSequence(torch.autograd.Function):
    """All states of ``x_t = J tanh(x_{t-1}) + u_t``, t = 1..T, with hand-written BPTT.

    The same numbers as autograd through the step loop (tests compare, and gradcheck it), but the
    backward loop is two ops per step and the weight gradient ``dJ = Σ_t δx_t tanh(x_{t-1})ᵀ`` is ONE
    batched matmul over all steps instead of T small ones (the measured gain: bench/RESULTS.md, "Kernels")."""

    @staticmethod
    def forward(ctx, u, x0, J):
        # u (T, E, B, N), x0 (E, B, N), J (E, N, N) -> X (T, E, B, N)
        T = u.shape[0]
        JT = J.transpose(1, 2).contiguous()  # one copy, not one per step inside baddbmm
        X = torch.empty_like(u)
        H = torch.empty((T + 1,) + x0.shape, dtype=u.dtype, device=u.device)  # tanh of every state
        torch.tanh(x0, out=H[0])
        for t in range(T):
            torch.baddbmm(u[t], H[t], JT, out=X[t])
            torch.tanh(X[t], out=H[t + 1])
        ctx.save_for_backward(H, J)
        return X

    @staticmethod
    def backward(ctx, gX):
        H, J = ctx.saved_tensors
        S = 1.0 - H * H                       # tanh'(x_t) for every t, one op
        dX = torch.empty_like(gX)
        dh = torch.zeros_like(H[0])           # ∂L/∂tanh(x_t), carried backwards
        for t in range(gX.shape[0] - 1, -1, -1):
            torch.addcmul(gX[t], dh, S[t + 1], out=dX[t])     # δx_t = g_t + δh_t ⊙ tanh'(x_t)
            dh = torch.bmm(dX[t], J)                           # δh_{t-1} = δx_t J
        e, n = J.shape[0], J.shape[1]
        dJ = torch.bmm(dX.permute(1, 3, 0, 2).reshape(e, n, -1), H[:-1].permute(1, 0, 2, 3).reshape(e, -1, n))
        return dX, dh * S[0], dJ


def _rnn_run(p: dict, x0: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    return _RNNSequence.apply(u, x0, p["J"])


class _RNNReadoutSequence(torch.autograd.Function):
    """Readouts of every step of ``x_t = J tanh(x_{t-1}) + W_in s_t / C + b``, ``r_t = w_out x_t + c``,
    with input drive, recurrence and readout in ONE matmul per step and hand-written BPTT.

    The step is ``[x_t | r_t] = [tanh(x_{t-1}) | s_t | 1] @ W2`` with
    ``W2 = [[Jᵀ, Jᵀ w_outᵀ], [W_inᵀ/C, W_inᵀ w_outᵀ/C], [b, b w_outᵀ + c]]`` (built by autograd in
    ``rnn_readouts``), so no (T, E, B, N) drive or readout tensor is ever formed. The tanh states are
    stored member-major (E, T, B, ·), which makes the weight gradient ``dW2 = Σ_t [h|s|1]ᵀ [δx|δr]``
    ONE batched matmul without a transposing copy. Two ATen calls per step each way, made from C++ when
    the compiled loop is available (``native``: same calls, same numbers, no interpreter per step)."""

    @staticmethod
    def forward(ctx, ext, x0, W2, n):
        # ext (T, E, B, A) extra input columns [s_t | 1]; x0 (E, B, N); W2 (E, N + A, N + O)
        T, e, b, a = ext.shape
        H = torch.empty((e, T + 1, b, n + a), dtype=W2.dtype, device=W2.device)
        H[:, :T, :, n:] = ext.transpose(0, 1)
        torch.tanh(x0, out=H[:, 0, :, :n])
        Y = torch.empty((T, e, b, W2.shape[2]), dtype=W2.dtype, device=W2.device)
        native.rnn_forward_loop(H, Y, W2, n)          # per step: ys[t] = hs[t] @ W2, hs[t+1] = tanh(xs[t])
        ctx.save_for_backward(H, W2)
        ctx.n = n
        return Y[..., n:]

    @staticmethod
    def backward(ctx, g):
        H, W2 = ctx.saved_tensors
        n = ctx.n
        T, e, b, o = g.shape
        dY = torch.empty((e, T, b, n + o), dtype=g.dtype, device=g.device)   # [δx_t | δr_t], member-major
        dY[:, :, :, n:] = g.transpose(0, 1)
        WT = W2[:, :n, :].mT.contiguous()           # (E, N + O, N): maps [δx|δr] back to ∂L/∂tanh(x_{t-1})
        dh = native.rnn_backward_loop(H, dY, WT, n)    # per step: δx_t = δh_t ⊙ (1 - h_t²), δh = [δx|δr] WT
        k = H.shape[3]
        flat = dY.reshape(e, T * b, n + o)
        dW2 = torch.bmm(H[:, :T].reshape(e, T * b, k).mT, flat)
        h0 = H[:, 0, :, :n]
        dx0 = dh - dh * h0 * h0
        dext = None
        if ctx.needs_input_grad[0]:
            dext = torch.bmm(flat, W2[:, n:, :].mT).reshape(e, T, b, k - n).transpose(0, 1)
        return dext, dx0, dW2, None


def rnn_readouts(p: dict, x0: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """Readouts ``r_t`` of the vanilla RNN for every step: inputs (T, E, B, C), x0 (E, B, N) ->
    (T, E, B, C_out); the same numbers as ``readout(run(...))`` (tests compare), faster (bench/RESULTS.md,
    "Kernels")."""
    J = p["J"]
    e, n = J.shape[0], J.shape[1]
    c_in = inputs.shape[-1]
    b = p["b"] if "b" in p else torch.zeros(e, n, dtype=J.dtype, device=J.device)
    Waug = torch.cat([J.mT, p["W_in"].mT / c_in, b[:, None, :]], 1)             # (E, N + C + 1, N)
    ro = Waug @ p["w_out"].mT                                                    # (E, N + C + 1, O)
    ro = torch.cat([ro[:, :-1], ro[:, -1:] + p["c"][:, None, :]], 1)
    ones = torch.ones(inputs.shape[:-1] + (1,), dtype=inputs.dtype, device=inputs.device)
    return _RNNReadoutSequence.apply(torch.cat([inputs, ones], -1), x0, torch.cat([Waug, ro], 2), n)


def _rnn_readout_state(p: dict, x: torch.Tensor) -> torch.Tensor:
    return x  # the paper reads out from the pre-activation state


# ------------------------------------------------------------------------------------- gru / lstm
def _gated_init(n_gates: int):
    def init(cfg: ModelConfig, n_in: int, n_out: int, gen: torch.Generator) -> dict:
        n = cfg.hidden
        s = 1.0 / math.sqrt(n)  # PyTorch's default U(-1/sqrt(N), 1/sqrt(N))

        def u(*shape):
            return (2 * torch.rand(*shape, generator=gen) - 1) * s

        p = {"W_ih": u(n_gates * n, n_in), "W_hh": cfg.gain * u(n_gates * n, n)}
        if cfg.bias:
            p["b_ih"], p["b_hh"] = u(n_gates * n), u(n_gates * n)
        return p
    return init


def _gated_drive(p: dict, inputs: torch.Tensor) -> torch.Tensor:
    return member_linear(inputs, p["W_ih"], p.get("b_ih"))


def _hh(p: dict, h: torch.Tensor) -> torch.Tensor:
    return member_linear(h, p["W_hh"], p.get("b_hh"))


def gru_update(gi: torch.Tensor, gh: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The GRU's new hidden state from its gate pre-activations, as in ``torch.nn.GRUCell`` (r, z, n
    gates in that order): ``gi`` = W_ih x + b_ih, ``gh`` = W_hh h + b_hh, both (..., 3N); h (..., N).
    The one place the equation is written: our ensemble GRU and the adapter of a user's nn.GRU call it."""
    ir, iz, i_n = gi.chunk(3, dim=-1)
    hr, hz, hn = gh.chunk(3, dim=-1)
    r = torch.sigmoid(ir + hr)
    z = torch.sigmoid(iz + hz)
    n = torch.tanh(i_n + r * hn)
    return (1 - z) * n + z * h


def lstm_update(gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The LSTM's new (h, c) from its gate pre-activations, as in ``torch.nn.LSTMCell`` (i, f, g, o
    gates): ``gates`` = W_ih x + b_ih + W_hh h + b_hh (..., 4N), c (..., N). The one place the equation
    is written: our ensemble LSTM and the adapter of a user's nn.LSTM call it."""
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _gru_step(p: dict, h: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    return gru_update(u, _hh(p, h), h)


def _lstm_step(p: dict, hc: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    # the state is cat(h, c) along the last dimension
    h, c = hc.chunk(2, dim=-1)
    h, c = lstm_update(u + _hh(p, h), c)
    return torch.cat([h, c], dim=-1)


def _h_part(p: dict, state: torch.Tensor) -> torch.Tensor:
    return state[..., : p["w_out"].shape[-1]]


@dataclass(frozen=True)
class Arch:
    """One architecture: its plain functions, and the fast paths it has (None: the generic code runs).

    A fast path gives the same numbers as the generic computation it replaces (tests compare); callers
    ask the entry for it instead of testing the architecture's name."""
    init: object        # (cfg, n_in, n_out, generator) -> params of one network
    drive: object       # (params, inputs (T,E,B,C)) -> u (T,E,B,G)
    step: object        # (params, state (E,B,D), u (E,B,G)) -> state
    jacobian: object    # (params, state_prev, u, state_new, Q (E,B,D,k)) -> D_t Q, or None: use JVPs
    readout_state: object  # (params, state) -> the part of the state the readout sees
    state_factor: int   # D = state_factor * N
    run: object = None  # optional fused (params, state0, u (T,E,B,G)) -> states (T,E,B,D)
    readouts: object = None  # optional fused (params, state0, inputs (T,E,B,C)) -> readouts (T,E,B,O):
                             # drive, recurrence and readout in one kernel (the task's forward pass)
    step_all: object = None  # optional (params, prev (T,E,B,D), u (T,E,B,G)) -> step(prev[t], u[t]) for
                             # every t at once (flossing's one-step state gradient)
    fused_lyapunov: object = None  # optional (params, states before each step (L,E,b,D), Q0 (E,1,D,k), *,
                                   # transient, qr_every) -> the window's first k exponents (E,b,k), with a
                                   # hand-written backward (the flossing window kernel, floss qr 'auto')


def _rnn_step_all(p: dict, prev: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    return member_linear(torch.tanh(prev), p["J"], None) + u


def _rnn_fused_lyapunov(p: dict, states: torch.Tensor, Q0: torch.Tensor, *, transient: int,
                        qr_every: int) -> torch.Tensor:
    from .fastqr import rnn_lyapunov_spectrum   # CholeskyQR with a float64 Gram (floss_core/fastqr.py)
    return rnn_lyapunov_spectrum(states, p["J"], Q0, transient=transient, qr_every=qr_every)


ARCHS: dict[str, Arch] = {
    "rnn": Arch(_rnn_init, _rnn_drive, _rnn_step, _rnn_jacobian, _rnn_readout_state, 1, run=_rnn_run,
                readouts=rnn_readouts, step_all=_rnn_step_all,
                fused_lyapunov=_rnn_fused_lyapunov),
    "gru": Arch(_gated_init(3), _gated_drive, _gru_step, None, _h_part, 1),
    "lstm": Arch(_gated_init(4), _gated_drive, _lstm_step, None, _h_part, 2),
}

READOUT = ("w_out", "c")     # trained by the task only
INITIAL = ("h0",)            # trainable initial state, trained by the task only


def validate_model(cfg: ModelConfig) -> None:
    if cfg.arch not in ARCHS:
        raise ValueError(f"unknown arch {cfg.arch!r}; choose one of {', '.join(ARCHS)}")
    if not 1 <= cfg.hidden <= 4096:
        raise ValueError(f"hidden must be in 1..4096, got {cfg.hidden}")
    if not (math.isfinite(cfg.gain) and cfg.gain > 0):
        raise ValueError(f"gain must be a positive number, got {cfg.gain}")
    if cfg.orthogonal and cfg.arch != "rnn":
        raise ValueError("orthogonal initialisation is only defined for arch 'rnn'")
    if cfg.relax_steps < 0:
        raise ValueError(f"relax_steps must be >= 0, got {cfg.relax_steps}")


def state_dim(cfg: ModelConfig) -> int:
    """D, the dimension of the state (and of its tangent space)."""
    return ARCHS[cfg.arch].state_factor * cfg.hidden


def init_network(cfg: ModelConfig, n_in: int, n_out: int, seed: int, *, batch: int = 1) -> dict:
    """Parameters of one network from one integer seed (no E dimension).

    Initial-state columns h0 (batch, D) are trainable; following the reference code they start from
    Gaussian noise relaxed for ``cfg.relax_steps`` steps of the autonomous (input-free) network.
    The readout follows the paper: w_out ~ N(0, 1), c = 0.001.
    """
    validate_model(cfg)
    gen = torch.Generator().manual_seed(int(seed))
    arch = ARCHS[cfg.arch]
    p = arch.init(cfg, n_in, n_out, gen)
    p["w_out"] = torch.randn(n_out, cfg.hidden, generator=gen)
    p["c"] = torch.full((n_out,), 0.001)
    h0 = torch.randn(batch, state_dim(cfg), generator=gen)
    if cfg.arch == "lstm":
        h0[:, cfg.hidden:] = 0.0  # cell state starts at zero, the hidden part from noise
    p["h0"] = h0
    if cfg.relax_steps:
        e = {k: v[None] for k, v in p.items()}
        u = arch.drive(e, torch.zeros(cfg.relax_steps, 1, batch, n_in))
        x = e["h0"]
        with torch.no_grad():
            for t in range(cfg.relax_steps):
                x = arch.step(e, x, u[t])
        p["h0"] = x[0]
    return p


def init_ensemble(cfg: ModelConfig, n_in: int, n_out: int, seeds, *, batch: int = 1) -> dict:
    """Stacked parameters of E = len(seeds) independent networks: every tensor gets a leading E.
    Member e equals ``init_network(cfg, n_in, n_out, seeds[e])`` exactly."""
    nets = [init_network(cfg, n_in, n_out, s, batch=batch) for s in seeds]
    return {k: torch.stack([n[k] for n in nets]) for k in nets[0]}


def drive(cfg: ModelConfig, params: dict, inputs: torch.Tensor) -> torch.Tensor:
    """Input drive for all steps: inputs (T, E, B, C) -> (T, E, B, G)."""
    return ARCHS[cfg.arch].drive(params, inputs)


def step_fn(cfg: ModelConfig, params: dict):
    """The one-step map ``step(state (E,B,D), u (E,B,G)) -> state`` with these parameters bound."""
    step = ARCHS[cfg.arch].step
    return lambda state, u: step(params, state, u)


def jacobian_fn(cfg: ModelConfig, params: dict):
    """Analytic tangent map ``(state_prev, u, state_new, Q) -> D_t Q`` where one is cheap, else None
    (callers then use forward-mode JVPs)."""
    jac = ARCHS[cfg.arch].jacobian
    return None if jac is None else (lambda s, u, new, Q: jac(params, s, u, new, Q))


def readout(cfg: ModelConfig, params: dict, states: torch.Tensor) -> torch.Tensor:
    """Logits / predictions r = w_out x + c: states (..., E, B, D) -> (..., E, B, C_out)."""
    x = ARCHS[cfg.arch].readout_state(params, states)
    return member_linear(x, params["w_out"], params["c"])


def initial_state(params: dict, batch: int) -> torch.Tensor:
    """(E, batch, D): the trainable initial-state columns, cycled when ``batch`` exceeds them."""
    h0 = params["h0"]
    reps = -(-batch // h0.shape[1])
    return h0.repeat(1, reps, 1)[:, :batch]


def run(cfg: ModelConfig, params: dict, state0: torch.Tensor, inputs: torch.Tensor, *,
        fused: bool = True) -> torch.Tensor:
    """All states of a forward pass: inputs (T, E, B, C), state0 (E, B, D) -> states (T, E, B, D).

    ``fused`` uses the architecture's hand-written sequence kernel where it has one (rnn); False
    steps through ``step`` under autograd (the reference path the tests compare it with)."""
    return run_driven(cfg, params, state0, drive(cfg, params, inputs), fused=fused)


def run_driven(cfg: ModelConfig, params: dict, state0: torch.Tensor, u: torch.Tensor, *,
               fused: bool = True) -> torch.Tensor:
    """Like ``run`` from a precomputed drive u (T, E, B, G)."""
    arch = ARCHS[cfg.arch]
    if fused and arch.run is not None:
        return arch.run(params, state0, u)
    step = arch.step
    x, out = state0, []
    for t in range(u.shape[0]):
        x = step(params, x, u[t])
        out.append(x)
    return torch.stack(out)


def flossed_names(params: dict) -> list[str]:
    """The parameters a flossing phase updates: recurrent weights, biases and input weights
    (everything but the readout and the initial state), as in the reference protocol."""
    return [k for k in params if k not in READOUT + INITIAL]
