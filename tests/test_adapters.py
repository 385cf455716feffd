"""Tests for floss_core.adapters: a user's nn.RNN / GRU / LSTM / *Cell / step map as a flat step map.

Known answers: the adapted step reproduces the module's own forward; its forward-mode tangents equal
autograd's Jacobian; nn.RNN's spectrum equals our vanilla cell's (the two maps are conjugate by
h = tanh(x)); a diagonal linear map has exponents log|a_i|; the long-term Jacobian at horizon 1 is
the one-step Jacobian. Flossing in both modes must lower |λ|; checkpoints round-trip and bad ones
are refused with one line.
"""
import io
import math
import os
import pickle

import pytest
import torch
from torch import nn

from floss_core import adapters as A
from floss_core import models as M
from floss_core.lyapunov import jvp_tangent, lyapunov_spectrum

# (constructor, kwargs) of every supported module type; float64 for exact comparisons
MODULES = {
    "rnn1": (nn.RNN, dict(num_layers=1)),
    "rnn2_bf_nobias": (nn.RNN, dict(num_layers=2, batch_first=True, bias=False)),
    "rnn2_relu": (nn.RNN, dict(num_layers=2, nonlinearity="relu")),
    "gru1_bf": (nn.GRU, dict(num_layers=1, batch_first=True)),
    "gru2_nobias": (nn.GRU, dict(num_layers=2, bias=False)),
    "lstm1_nobias_bf": (nn.LSTM, dict(num_layers=1, bias=False, batch_first=True)),
    "lstm2": (nn.LSTM, dict(num_layers=2)),
    "lstm2_bf": (nn.LSTM, dict(num_layers=2, batch_first=True)),
    "rnncell_relu": (nn.RNNCell, dict(nonlinearity="relu")),
    "rnncell_nobias": (nn.RNNCell, dict(bias=False)),
    "grucell": (nn.GRUCell, dict()),
    "lstmcell": (nn.LSTMCell, dict()),
}
C, H, T, B = 3, 5, 7, 2


def _module(name, seed=0):
    torch.manual_seed(seed)
    cls, kw = MODULES[name]
    return cls(C, H, **kw).double()


def _is_cell(m):
    return isinstance(m, (nn.RNNCell, nn.GRUCell, nn.LSTMCell))


def _random_h0(m, gen):
    lstm = isinstance(m, (nn.LSTM, nn.LSTMCell))
    shape = (B, H) if _is_cell(m) else (m.num_layers, B, H)
    h = torch.randn(*shape, generator=gen, dtype=torch.float64)
    return (h, torch.randn(*shape, generator=gen, dtype=torch.float64)) if lstm else h


class Custom(nn.Module):
    """A user's own cell with forward(state, x) -> state."""

    def __init__(self, d=4, c=C):
        super().__init__()
        self.W = nn.Parameter(torch.randn(d, d, dtype=torch.float64) / d ** 0.5)
        self.U = nn.Parameter(torch.randn(d, c, dtype=torch.float64))

    def forward(self, s, x):
        return torch.tanh(s @ self.W.T + x @ self.U.T)


# ------------------------------------------------------------------------ the step map itself
@pytest.mark.parametrize("name", MODULES)
def test_adapted_step_reproduces_the_module_forward(name):
    m, gen = _module(name), torch.Generator().manual_seed(1)
    st = A.module_step(m)
    h0 = _random_h0(m, gen)
    x = torch.randn(T, B, C, generator=gen, dtype=torch.float64)
    flat = A.trajectory(m, x.transpose(0, 1) if getattr(m, "batch_first", False) else x, h0=h0)   # (T, B, D)
    assert flat.shape == (T, B, st.dim)
    if _is_cell(m):
        h, outs = h0, []
        for t in range(T):
            h = m(x[t], h)
            outs.append(st.state_from(h))
        torch.testing.assert_close(flat, torch.stack(outs), rtol=1e-10, atol=1e-12)
        return
    out, h_n = m(x.transpose(0, 1) if m.batch_first else x, h0)
    out = out.transpose(0, 1) if m.batch_first else out                      # (T, B, H): top layer's h
    top = slice((m.num_layers - 1) * H, m.num_layers * H)
    torch.testing.assert_close(flat[..., top], out, rtol=1e-10, atol=1e-12)
    final = st.state_to(flat[-1])
    for mine, theirs in zip(final if isinstance(final, tuple) else (final,),
                            h_n if isinstance(h_n, tuple) else (h_n,)):
        torch.testing.assert_close(mine, theirs, rtol=1e-10, atol=1e-12)
    assert torch.equal(st.state_from(final), flat[-1])                        # state maps are inverses


def test_unbatched_inputs_follow_the_module():
    m, gen = _module("lstm2"), torch.Generator().manual_seed(2)
    x = torch.randn(T, C, generator=gen, dtype=torch.float64)
    out, _ = m(x)                                                             # (T, H) unbatched
    flat = A.trajectory(m, x)
    assert flat.shape == (T, 2 * 2 * H)
    torch.testing.assert_close(flat[:, H:2 * H], out, rtol=1e-10, atol=1e-12)
    assert A.spectrum(m, x, k=3).shape == (3,)


@pytest.mark.parametrize("name", list(MODULES) + ["custom"])
def test_forward_mode_tangent_equals_autograd_jacobian(name):
    gen = torch.Generator().manual_seed(3)
    if name == "custom":
        m = Custom()
        st = A.module_step(m)._replace(dim=4)
    else:
        m = _module(name)
        st = A.module_step(m)
    tangent = st.tangent or jvp_tangent(st.step)      # a custom map gets lyapunov's vmap-of-jvp default
    d, k = st.dim, 3
    state = torch.randn(B, d, generator=gen, dtype=torch.float64)
    if "relu" in name:
        state = state.abs() + 0.1                     # away from relu's kink
    x = torch.randn(B, C, generator=gen, dtype=torch.float64)
    Q = torch.randn(B, d, k, generator=gen, dtype=torch.float64)
    got = tangent(state, x, st.step(state, x), Q)
    for b in range(B):
        jac = torch.func.jacrev(lambda s: st.step(s[None], x[b:b + 1])[0])(state[b])   # (D, D)
        torch.testing.assert_close(got[b], jac @ Q[b], rtol=1e-10, atol=1e-12)


def test_tangent_is_differentiable_like_autograd():
    """Flossing backpropagates through the tangents: their parameter gradients must be autograd's."""
    m, gen = _module("gru2_nobias"), torch.Generator().manual_seed(4)
    st = A.module_step(m)
    state = torch.randn(B, st.dim, generator=gen, dtype=torch.float64)
    x = torch.randn(B, C, generator=gen, dtype=torch.float64)
    Q = torch.randn(B, st.dim, 2, generator=gen, dtype=torch.float64)
    grads = []
    for tangent in (st.tangent, jvp_tangent(st.step)):
        m.zero_grad()
        tangent(state, x, None, Q).square().sum().backward()
        grads.append([p.grad.clone() for p in m.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------ spectra: known answers
def test_nn_rnn_spectrum_equals_our_vanilla_cell():
    """nn.RNN: h_t = tanh(W_ih s_t + b_ih + W_hh h_{t-1} + b_hh); ours: x_t = J tanh(x_{t-1}) + b + W_in s_t / C.
    With J = W_hh, b = b_ih + b_hh, W_in = C W_ih the maps are conjugate by h = tanh(x): equal exponents."""
    n, c, steps, k = 16, 2, 1200, 4
    gen = torch.Generator().manual_seed(0)
    rnn = nn.RNN(c, n).double()
    with torch.no_grad():   # a chaotic-edge network, so the exponents are not trivially equal
        rnn.weight_hh_l0.copy_(1.5 * torch.randn(n, n, generator=gen, dtype=torch.float64) / n ** 0.5)
        rnn.weight_ih_l0.copy_(torch.randn(n, c, generator=gen, dtype=torch.float64))
    s = torch.randint(0, 2, (steps, 1, c), generator=gen).double()
    Q0 = torch.linalg.qr(torch.randn(n, k, generator=gen, dtype=torch.float64))[0]
    lam_torch = A.spectrum(rnn, s, k=k, transient=100, Q0=Q0)[0]             # from h0 = 0
    cfg = M.ModelConfig(arch="rnn", hidden=n)
    p = {"J": rnn.weight_hh_l0.detach()[None], "b": (rnn.bias_ih_l0 + rnn.bias_hh_l0).detach()[None],
         "W_in": (c * rnn.weight_ih_l0).detach()[None]}
    x0 = torch.zeros(1, 1, n, dtype=torch.float64)                           # tanh(x0) = h0 = 0
    lam_ours = lyapunov_spectrum(M.step_fn(cfg, p), x0, M.drive(cfg, p, s[:, None]), k,
                                 jacobian=M.jacobian_fn(cfg, p), transient=100, Q0=Q0)[0, 0]
    assert lam_ours[0] > -0.5                                                 # a non-trivial spectrum
    assert (lam_torch - lam_ours).abs().max() < 1e-3, (lam_torch, lam_ours)


def test_custom_step_diagonal_map_has_log_abs_exponents():
    a = torch.tensor([0.5, -1.5, 1.1], dtype=torch.float64)
    lam = A.spectrum(lambda s, x: a * s + x, torch.zeros(50, 1, 3, dtype=torch.float64), k=3,
                     h0=torch.ones(1, 3, dtype=torch.float64), Q0=torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(lam[0], torch.log(a.abs()).sort(descending=True).values, rtol=0, atol=1e-12)


def test_diagnostics_horizon_one_is_the_one_step_jacobian():
    m, gen = _module("lstm2"), torch.Generator().manual_seed(5)
    x = torch.randn(30, 1, C, generator=gen, dtype=torch.float64)
    st = A.module_step(m)
    d = A.diagnostics(m, x, k=4)
    assert d["horizons"] == [1, 2, 5, 10, 20, 30]
    jac = torch.func.jacrev(lambda s: st.step(s[None], x[0])[0])(torch.zeros(st.dim, dtype=torch.float64))
    torch.testing.assert_close(d["log_sv"][0, 0], torch.log(torch.linalg.svdvals(jac)), rtol=0, atol=1e-8)
    torch.testing.assert_close(d["log_kappa"], d["log_sv"][..., 0] - d["log_sv"][..., -1])
    g = d["grad_norms"][:, 0]
    assert g.shape == (31,) and g[0] > 0
    reach = d["grad_reach"][0]
    assert reach == math.inf or g[int(reach)] < 1e-3 * g[0] <= g[int(reach) - 1]


def test_singular_long_term_jacobian_reports_infinite_kappa():
    dead = torch.tensor([1.0, -1.0], dtype=torch.float64)   # unit 2 is a dead ReLU: D_t = diag(1, 0)
    d = A.diagnostics(lambda s, x: torch.relu(s * dead), 3, h0=torch.ones(1, 2, dtype=torch.float64))
    assert torch.isinf(d["log_kappa"]).all() and (d["log_kappa"] > 0).all()     # κ₂ = ∞, not an error
    assert torch.equal(d["log_sv"][:, 0, 0], torch.zeros(3, dtype=torch.float64))  # the live unit: σ = 1


def test_gradient_reach_and_forecast():
    assert A.gradient_reach([1.0, 0.1, 1e-2, 1e-4]) == 3
    assert A.gradient_reach([1.0, 0.5]) == math.inf
    f = A.forecast(-0.2, 60)
    assert f["horizon"] == pytest.approx(math.log(1e-3) / -0.2) and f["flossing_recommended"]
    assert f["verdict"] == "this network can bridge ≈ 35 steps; your task needs 60: flossing recommended"
    f = A.forecast(torch.tensor([[-0.05, -0.3], [-0.05, -0.4]]), 60)         # (B, k): λ_1 = -0.05
    assert f["horizon"] == pytest.approx(138.155, abs=1e-3) and not f["flossing_recommended"]
    assert "should train without flossing" in f["verdict"]
    f = A.forecast(0.04, 10)                                                 # chaotic
    assert f["horizon"] == math.inf and f["flossing_recommended"] and "may explode" in f["verdict"]
    f = A.forecast(0.004, 60)                                                # a flossed net: the edge of chaos
    assert f["horizon"] == math.inf and not f["flossing_recommended"] and "edge of chaos" in f["verdict"]
    for bad, msg in ((dict(delay=0), "delay"), (dict(delay=5, tol=2.0), "tol")):
        with pytest.raises(ValueError, match=msg):
            A.forecast(-0.1, **bad)
    with pytest.raises(ValueError, match="not a number"):
        A.forecast(float("nan"), 5)


def test_bad_inputs_get_one_line_errors():
    m = _module("lstm2")
    with pytest.raises(ValueError, match="input_size=3"):
        A.spectrum(m, torch.zeros(10, 1, 2, dtype=torch.float64), k=2)
    with pytest.raises(ValueError, match=r"k must be in 1..20"):
        A.spectrum(m, torch.zeros(10, 1, 3, dtype=torch.float64), k=21)
    with pytest.raises(ValueError, match="bidirectional"):
        A.module_step(nn.GRU(3, 4, bidirectional=True))
    with pytest.raises(ValueError, match="proj_size"):
        A.module_step(nn.LSTM(3, 4, proj_size=2))
    with pytest.raises(ValueError, match="needs h0"):
        A.spectrum(lambda s, x: s, torch.zeros(5, 1, 1), k=1)
    with pytest.raises(ValueError, match="params="):
        A.floss(lambda s, x: s, torch.zeros(5, 1, 1), k=1, steps=1, h0=torch.zeros(1, 2))
    with pytest.raises(ValueError, match="h0 does not fit"):
        A.spectrum(m, torch.zeros(10, 2, 3, dtype=torch.float64), k=2, h0=(torch.zeros(1, 2, 5), torch.zeros(1, 2, 5)))


# ------------------------------------------------------------------------ flossing, both modes
def _user_gru(seed=0):
    """An untrained nn.GRU with PyTorch's default init: contracting (λ ≈ -0.45), vanishing gradients."""
    torch.manual_seed(seed)
    return nn.GRU(1, 8)


def _mean_abs_lambda(m, k=3):
    x = torch.randint(0, 2, (400, 1, 1), generator=torch.Generator().manual_seed(9)).float()
    return A.spectrum(m, x, k=k, transient=100)[0].abs().mean().item()


def test_separate_flossing_phase_lowers_abs_lambda():
    m = _user_gru()
    before = _mean_abs_lambda(m)
    gen = torch.Generator().manual_seed(1)
    out = A.floss(m, lambda i: torch.randint(0, 2, (30, 1, 1), generator=gen).float(), k=3, steps=15, lr=3e-2,
                  transient=10)
    after = _mean_abs_lambda(m)
    assert out["steps"] == 15 and out["diverged_step"] is None and len(out["exponents"][0]) == 3
    assert before > 0.3 and after < 0.5 * before, (before, after)


def test_flossing_term_in_a_user_training_loop_lowers_abs_lambda():
    m = _user_gru()
    readout = nn.Linear(8, 1)
    before = _mean_abs_lambda(m)
    opt = torch.optim.Adam([*m.parameters(), *readout.parameters()], lr=3e-2)
    gen = torch.Generator().manual_seed(2)
    for step in range(16):
        x = torch.randint(0, 2, (30, 4, 1), generator=gen).float()
        out, _ = m(x)
        loss = nn.functional.binary_cross_entropy_with_logits(readout(out[1:]), x[:-1])   # copy, delay 1
        if step % 2 == 0:                                                                   # every M = 2 steps
            loss = loss + 1.0 * A.flossing_loss_term(m, x[:, :1], k=3, transient=10)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = _mean_abs_lambda(m)
    assert after < 0.5 * before, (before, after)


def test_floss_a_custom_module_updates_its_parameters():
    torch.manual_seed(0)
    m = Custom()
    w0 = m.W.detach().clone()
    out = A.floss(m, torch.randint(0, 2, (20, 1, C)).double(), k=2, steps=4, lr=1e-2, transient=5,
                  h0=torch.zeros(1, 4, dtype=torch.float64))
    assert out["steps"] == 4 and all(math.isfinite(v) for v in out["loss"])
    assert out["loss"][-1] < out["loss"][0] and not torch.equal(m.W, w0)


# ------------------------------------------------------------------------ checkpoints
def test_checkpoint_round_trip_keeps_the_spectrum():
    torch.manual_seed(0)
    for arch, m in (("lstm", nn.LSTM(2, 6, num_layers=2)), ("gru_cell", nn.GRUCell(2, 6))):
        x = torch.randint(0, 2, (120, 1, 2), generator=torch.Generator().manual_seed(0)).float()
        data = A.save_state_dict(m)
        back = A.load_checkpoint(data, arch=arch, hidden=6, input_size=2, num_layers=1 if "cell" in arch else 2)
        assert type(back) is type(m)
        assert torch.equal(A.spectrum(m, x, k=3, transient=20), A.spectrum(back, x, k=3, transient=20))
        # a file object and a path work too
        assert type(A.load_checkpoint(io.BytesIO(data), arch=arch, hidden=6, input_size=2,
                                      num_layers=back.num_layers if hasattr(back, "num_layers") else 1)) is type(m)


class NotAStateDict:
    """A custom class: torch.load(weights_only=True) must refuse to unpickle it."""

    def __reduce__(self):
        return (print, ("this code must never run",))


def _saved(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def test_checkpoint_rejections_name_the_problem(tmp_path):
    lstm = _saved(nn.LSTM(2, 6).state_dict())
    kw = dict(hidden=6, input_size=2)
    cases = [
        (lstm, dict(arch="gru", **kw), r"'weight_ih_l0' has shape \(24, 2\), expected \(18, 2\)"),
        (_saved(nn.LSTM(2, 6).state_dict()), dict(arch="lstm", hidden=8, input_size=2),
         r"shape \(24, 2\), expected \(32, 2\)"),
        (_saved(nn.GRU(2, 6).state_dict()), dict(arch="lstm", **kw), r"it looks like a gru with hidden=6"),
        (_saved({**nn.LSTM(2, 6).state_dict(), "fc.weight": torch.zeros(1, 6)}), dict(arch="lstm", **kw),
         "unexpected key 'fc.weight'"),
        (lstm, dict(arch="lstm", num_layers=2, **kw), "missing key 'weight_ih_l1'"),
        (_saved({k: v for k, v in nn.LSTM(2, 6).state_dict().items() if k != "bias_hh_l0"}),
         dict(arch="lstm", **kw), "missing key 'bias_hh_l0'"),
        (_saved({"lstm." + k: v for k, v in nn.LSTM(2, 6).state_dict().items()}), dict(arch="lstm", **kw),
         "pass prefix='lstm.'"),
        (_saved([torch.zeros(3)]), dict(arch="lstm", **kw), "not a state_dict: the file holds a list"),
        (_saved({"model": nn.LSTM(2, 6).state_dict()}), dict(arch="lstm", **kw), "training checkpoint"),
        (_saved(NotAStateDict()), dict(arch="lstm", **kw), r"holds code or objects other than tensors \(print\)"),
        (_saved(nn.LSTM(2, 6)), dict(arch="lstm", **kw),   # a pickled module
         r"other than tensors \(torch.nn.modules.rnn.LSTM\); save the module's state_dict"),
        (b"not a torch file", dict(arch="lstm", **kw), "could not read the checkpoint"),
        (b"PK\x03\x04 broken zip", dict(arch="lstm", **kw), "could not read the checkpoint"),
        (b"", dict(arch="lstm", **kw), "checkpoint is empty"),
        (lstm, dict(arch="lstm", max_bytes=100, **kw), "too big"),
        (lstm, dict(arch="lstn", **kw), "unknown arch 'lstn'; choose one of"),
        (_saved({k: v.long() for k, v in nn.RNN(2, 6).state_dict().items()}), dict(arch="rnn", **kw),
         "expected floating point"),
    ]
    for data, kwargs, msg in cases:
        with pytest.raises(ValueError, match=msg) as e:
            A.load_checkpoint(data, **kwargs)
        assert "\n" not in str(e.value)
    # the prefix option picks a submodule's keys out of a bigger model's state_dict
    model = nn.ModuleDict({"lstm": nn.LSTM(2, 6), "fc": nn.Linear(6, 1)})
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    back = A.load_checkpoint(str(path), arch="lstm", prefix="lstm.", **kw)
    assert torch.equal(back.weight_hh_l0, model["lstm"].weight_hh_l0)
    with pytest.raises(ValueError, match="too big"):
        A.load_checkpoint(str(path), arch="lstm", prefix="lstm.", max_bytes=10, **kw)


def test_weights_only_refusal_runs_no_code(capsys):
    with pytest.raises(ValueError):
        A.load_checkpoint(_saved(NotAStateDict()), arch="rnn", hidden=2, input_size=1)
    assert "must never run" not in capsys.readouterr().out
    with pytest.raises(pickle.UnpicklingError):     # the guard is torch's own: prove it is on
        torch.load(io.BytesIO(_saved(NotAStateDict())), weights_only=True)


class Payload:
    """A malicious checkpoint: unpickling it would run a shell command (it creates a file)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_checkpoint_is_refused_without_advice_to_turn_the_guard_off(tmp_path):
    """Issue 16: torch's own text, cut at "Re-running `torch.load` with `weights_only` set to `False`", read
    alone as advice to switch the protection off; the message says the file was refused, and why."""
    marker = tmp_path / "ran"
    payloads = {"bare": Payload(marker), "in a dict": {"weight_ih_l0": Payload(marker)},
                "beside tensors": {**nn.RNN(1, 4).state_dict(), "extra": Payload(marker)}}
    for what, obj in payloads.items():
        path = tmp_path / "evil.pt"
        path.write_bytes(_saved(obj))
        for source in (path.read_bytes(), str(path)):
            with pytest.raises(ValueError) as e:
                A.load_checkpoint(source, arch="rnn", hidden=4, input_size=1)
            text = str(e.value)
            assert text.startswith("checkpoint refused: the file holds code or objects other than tensors"), (what, text)
            assert "system" in text, text             # what it holds: the function it would have called
            for advice in ("weights_only", "Re-running", "torch.load", "trusted", "False", "\n"):
                assert advice not in text, (what, advice, text)
    assert not marker.exists()                        # and nothing from the files ran


# ------------------------------------------------------------------------ reports and the CLI
def test_reports_and_forecast_of_our_own_model():
    torch.manual_seed(0)
    m = nn.LSTM(1, 4, batch_first=True)
    rep = A.checkpoint_report(m, delay=30, k=4, steps=60, transient=20)
    assert len(rep["exponents"]) == 4 and rep["dim"] == 8 and rep["horizons"][-1] == 60
    assert len(rep["log10_kappa"]) == len(rep["horizons"]) and len(rep["grad_norms"]) == 61
    assert rep["forecast"]["lambda1"] == rep["exponents"][0]
    fl = A.floss_checkpoint(m, k=2, steps=3, lr=1e-2, window=20, transient=5, measure_steps=50)
    assert len(fl["loss"]) == 3 and len(fl["before"]) == len(fl["after"]) == 2
    f = A.forecast_model(M.ModelConfig(arch="rnn", hidden=16, gain=0.5), 60, steps=200, transient=50)
    assert f["lambda1"] < 0 and f["horizon"] < 60 and f["flossing_recommended"]


def test_cli_forecast(capsys):
    from floss_core.__main__ import main
    main(["forecast", "--arch", "rnn", "--hidden", "16", "--gain", "0.5", "--delay", "60", "--steps", "300"])
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("this network can bridge ≈ ") and "flossing recommended" in out[0]
    main(["forecast", "--arch", "gru", "--hidden", "8", "--delay", "5", "--steps", "200", "--json"])
    import json
    d = json.loads(capsys.readouterr().out)
    assert d["delay"] == 5 and d["arch"] == "gru" and "verdict" in d
    for argv, msg in ((["--delay", "0"], "delay"), (["--delay", "5", "--tol", "3"], "tol"),
                      (["--delay", "5", "--hidden", "0"], "hidden")):
        with pytest.raises(SystemExit) as e:
            main(["forecast", *argv])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and msg in err


# ------------------------------------------------------------------------------------ flossing in the background
def _wait(folder, proc, timeout=120.0):
    import time
    t0 = time.monotonic()
    while (s := A.floss_job_status(folder, proc))["state"] == "running":
        assert time.monotonic() - t0 < timeout
        time.sleep(0.2)
    return s


@pytest.mark.slow
def test_floss_job_in_a_separate_process_gives_the_in_process_result():
    torch.manual_seed(3)
    gru = torch.nn.GRU(1, 4)
    data = A.save_state_dict(gru)
    folder, proc = A.start_floss_job(data, dict(arch="gru", hidden=4, input_size=1), k=3, steps=4, lr=1e-2)
    assert proc.pid != os.getpid()
    s = _wait(folder, proc)
    assert s["state"] == "done", s
    here = A.load_checkpoint(data, arch="gru", hidden=4, input_size=1)
    want = A.floss_checkpoint(here, k=3, steps=4, lr=1e-2)
    assert s["out"]["after"] == want["after"] and s["out"]["steps"] == 4
    got = A.load_checkpoint(s["weights"], arch="gru", hidden=4, input_size=1)
    assert torch.equal(got.weight_hh_l0, here.weight_hh_l0)


def test_floss_job_refuses_a_bad_request_before_starting(tmp_path, monkeypatch):
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    data = A.save_state_dict(torch.nn.GRU(1, 4))
    with pytest.raises(ValueError, match=r"k must be in 1..4 \(the state dimension\), got 9"):
        A.start_floss_job(data, dict(arch="gru", hidden=4, input_size=1), k=9, steps=4, lr=1e-2)
    with pytest.raises(ValueError, match="it looks like a gru"):
        A.start_floss_job(data, dict(arch="lstm", hidden=4, input_size=1), k=2, steps=4, lr=1e-2)
    assert not list(tmp_path.iterdir())          # nothing written, nothing started


def test_floss_job_status_reports_a_process_that_died_without_a_word(tmp_path):
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-c", "import os; os._exit(3)"])
    proc.wait()
    assert A.floss_job_status(str(tmp_path), proc) == {
        "state": "failed", "error": "the flossing process ended without a result (exit code 3)"}
    (tmp_path / "error.txt").write_text("k must be in 1..4 (the state dimension), got 9")
    assert A.floss_job_status(str(tmp_path))["error"].startswith("k must be in 1..4")


def test_spectrum_in_float64_on_a_copy_leaves_the_module_float32():
    torch.manual_seed(0)
    gru = torch.nn.GRU(1, 6)
    x = torch.randint(0, 2, (120, 1, 1)).float()
    from floss_core.adapters import spectrum as adapter_spectrum
    lam64 = adapter_spectrum(gru, x, k=6, transient=20, dtype=torch.float64)
    lam32 = adapter_spectrum(gru, x, k=6, transient=20)
    assert lam64.dtype == torch.float64 and lam32.dtype == torch.float32
    assert next(gru.parameters()).dtype == torch.float32               # the user's module is untouched
    assert torch.allclose(lam64.float(), lam32, atol=1e-3)              # the same spectrum, to float32's rounding


def test_floss_detaches_inputs_computed_by_the_users_own_model():
    # issue 17: an embedded window (it carries the embedding's graph) crashed at step 2, and a sampler without
    # no_grad piled the flossing gradient into the embedding's weights
    from floss_core.adapters import floss

    torch.manual_seed(0)
    emb, rnn = torch.nn.Embedding(10, 4), torch.nn.RNN(4, 6)
    window = emb(torch.randint(0, 10, (30, 1)))            # (T, B, input) with grad_fn
    before = [p.detach().clone() for p in rnn.parameters()]
    out = floss(rnn, window, k=2, steps=3, lr=1e-2, transient=5)
    assert out["steps"] == 3 and emb.weight.grad is None
    assert any(not torch.equal(a, b) for a, b in zip(before, rnn.parameters()))   # it flossed the RNN
    out = floss(rnn, lambda i: emb(torch.randint(0, 10, (30, 1))), k=2, steps=2, lr=1e-2, transient=5)
    assert out["steps"] == 2 and emb.weight.grad is None
