"""What users pass to the adapters (issue 17, item 3): accepted when it means one thing, refused in their
words when it is wrong.

Accepted: a whole model (-> its one recurrent module), a subclass of nn.LSTM, torch.compile /
DataParallel / DistributedDataParallel wrappers, h0 in the module's own format (batched or not), dropout
between layers (measured off, said once), relu RNNs (κ₂ = ∞ is a result), float16 / bfloat16 modules
(computed in float32, said once). Each gives exactly the plain module's results. Refused, one line naming
the fix: several recurrent modules, an LSTM given only h, h0 of the wrong L / H / batch, a batch-first
tensor to a sequence-first module and the reverse, a (B, C) step to a cell, token ids.
"""
import json
import math
import warnings

import pytest
import torch
from torch import nn

from floss_core import adapters as A
from floss_core.adapters.resolve import recurrent_modules, resolve_module

C, H, T, B = 3, 6, 12, 4


def _lstm(seed=0, **kw):
    torch.manual_seed(seed)
    return nn.LSTM(C, H, num_layers=2, **kw)


def _x(t=T, b=B, c=C, seed=1, batch_first=False):
    x = torch.randn(t, b, c, generator=torch.Generator().manual_seed(seed))
    return x.transpose(0, 1).contiguous() if batch_first else x


def _h0(layers=2, b=B, h=H, seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(layers, b, h, generator=g), torch.randn(layers, b, h, generator=g)


def _refused(fn, *fragments):
    """The ValueError's text: one line, holding every fragment."""
    with pytest.raises(ValueError) as e:
        fn()
    text = str(e.value)
    assert "\n" not in text, text
    for f in fragments:
        assert f in text, (f, text)
    return text


class WordLM(nn.Module):
    """The issue's word-level LM: embedding -> 2-layer sequence-first LSTM -> decoder."""

    def __init__(self, vocab=10, dropout=0.0):
        super().__init__()
        self.emb = nn.Embedding(vocab, C)
        self.rnn = nn.LSTM(C, H, num_layers=2, dropout=dropout)
        self.dec = nn.Linear(H, vocab)

    def forward(self, tokens, hidden=None):
        out, hidden = self.rnn(self.emb(tokens), hidden)
        return self.dec(out), hidden


class MyLSTM(nn.LSTM):
    """A user's subclass with its own forward (which the adapters do not use: they step the weights)."""

    def forward(self, x, hx=None):
        out, hx = super().forward(x, hx)
        return 2 * out, hx


def _all_results(module, x, h0):
    """Every entry point's result on (module, x, h0), for exact comparisons."""
    torch.manual_seed(0)
    out = {"trajectory": A.trajectory(module, x, h0=h0).detach(),
           "spectrum": A.spectrum(module, x, k=3, h0=h0),
           "log_sv": A.diagnostics(module, x, k=3, h0=h0)["log_sv"],
           "term": A.flossing_loss_term(module, x, k=3, h0=h0).detach()}
    return out


def _assert_same(a, b):
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ------------------------------------------------------------------------ what the user passed -> the module
def test_a_whole_model_is_measured_through_its_recurrent_module_exactly():
    model, x, h0 = WordLM(), _x(), _h0()
    assert resolve_module(model) is model.rnn
    _assert_same(_all_results(model, x, h0), _all_results(model.rnn, x, h0))
    # the flossing phase updates the recurrent module's parameters only (the default params are its own)
    emb, dec = model.emb.weight.detach().clone(), model.dec.weight.detach().clone()
    w = model.rnn.weight_hh_l0.detach().clone()
    A.floss(model, x, k=2, steps=2, lr=1e-2, stop_tol=None)
    assert torch.equal(model.emb.weight, emb) and torch.equal(model.dec.weight, dec)
    assert not torch.equal(model.rnn.weight_hh_l0, w)


def test_several_recurrent_modules_are_listed_to_choose_from():
    class Seq2Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.LSTM(C, H)
            self.blocks = nn.ModuleList([nn.Linear(H, H), nn.GRU(H, H)])

    model = Seq2Seq()
    assert [p for p, _ in recurrent_modules(model)] == ["encoder", "blocks[1]"]
    text = _refused(lambda: A.spectrum(model, _x(), k=2))
    assert text == ("the Seq2Seq holds 2 recurrent modules: encoder (LSTM), blocks[1] (GRU); pass one of them, "
                    "e.g. model.encoder")
    assert resolve_module(model.blocks[1]) is model.blocks[1]


def test_a_module_without_recurrent_parts_is_still_a_custom_step_map():
    lin = nn.Linear(3, 3)
    assert resolve_module(lin) is lin
    _refused(lambda: A.spectrum(lin, _x(), k=1), "the Linear holds no nn.RNN / GRU / LSTM or *Cell",
             "needs h0")
    step = nn.Sequential(nn.Tanh())                                   # forward(s) only: wrap it
    lam = A.spectrum(lambda s, x: 0.5 * step(s), 20, k=2, h0=torch.zeros(1, 2), Q0=torch.eye(2))
    torch.testing.assert_close(lam[0], torch.full((2,), math.log(0.5)))


def test_a_subclass_is_stepped_with_its_own_weights():
    torch.manual_seed(0)
    mine = MyLSTM(C, H, num_layers=2)
    plain = _lstm()
    plain.load_state_dict(mine.state_dict())
    x, h0 = _x(), _h0()
    assert resolve_module(mine) is mine
    _assert_same(_all_results(mine, x, h0), _all_results(plain, x, h0))


def test_torch_compile_and_data_parallel_are_unwrapped():
    rnn, x, h0 = _lstm(), _x(), _h0()
    want = _all_results(rnn, x, h0)
    compiled = torch.compile(rnn)                 # wraps lazily: nothing is compiled until it is called
    assert type(compiled).__name__ == "OptimizedModule" and resolve_module(compiled) is rnn
    for wrapped in (compiled, nn.DataParallel(rnn), nn.DataParallel(torch.compile(rnn))):
        _assert_same(_all_results(wrapped, x, h0), want)
    lm = WordLM()
    assert resolve_module(nn.DataParallel(lm)) is lm.rnn         # a wrapped whole model
    inner = WordLM()
    inner.rnn = torch.compile(inner.rnn)                          # a compiled module inside a model
    assert resolve_module(inner) is inner.rnn._orig_mod


def test_distributed_data_parallel_is_unwrapped(tmp_path):
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_gloo_available()) or dist.is_initialized():
        pytest.skip("needs torch.distributed with gloo and no process group of its own yet")
    rnn = _lstm()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ddp = nn.parallel.DistributedDataParallel(rnn)
        assert resolve_module(ddp) is rnn
        assert torch.equal(A.spectrum(ddp, _x(), k=2), A.spectrum(rnn, _x(), k=2))
    finally:
        dist.destroy_process_group()


def test_a_packed_sequence_is_told_to_be_padded():
    x = nn.utils.rnn.pack_padded_sequence(_x(), [T, T - 2, 3, 1])
    _refused(lambda: A.spectrum(_lstm(), x, k=2), "got a PackedSequence: pass "
             "torch.nn.utils.rnn.pad_packed_sequence(x)[0]")


def test_token_ids_to_a_whole_model_name_the_embedding():
    model = WordLM()
    text = _refused(lambda: A.spectrum(model, torch.zeros(T, B, dtype=torch.long), k=2))
    assert text == ("the LSTM takes float inputs (T, B, C) with C = input_size = 3; got a tensor of dtype int64 "
                    "(12, 4) (token ids?): pass what feeds the LSTM, e.g. model.emb(tokens)")


# ------------------------------------------------------------------------ h0 in the module's own format
def test_h0_in_the_modules_own_format_batched_or_not():
    rnn, x = _lstm(), _x()
    h, c = _h0()
    flat = A.trajectory(rnn, x, h0=(h, c))
    out, (h_n, c_n) = rnn(x, (h, c))
    torch.testing.assert_close(flat[..., H:2 * H], out.detach())                 # top layer's h
    # an unbatched (L, H) pair with an unbatched (T, C) sequence, as torch takes them
    flat1 = A.trajectory(rnn, x[:, 0], h0=(h[:, 0], c[:, 0]))
    torch.testing.assert_close(flat1, flat[:, 0])
    # an unbatched pair with batched inputs: the same start for every sequence
    same = A.trajectory(rnn, x, h0=(h[:, 0], c[:, 0]))
    want = A.trajectory(rnn, x, h0=(h[:, :1].expand(-1, B, -1), c[:, :1].expand(-1, B, -1)))
    assert torch.equal(same, want)
    # cells: (B, H) / (h, c)
    cell = nn.LSTMCell(C, H)
    hc = (h[0], c[0])
    got = A.trajectory(cell, x, h0=hc)
    for t in range(T):
        hc = cell(x[t], hc)
    torch.testing.assert_close(got[-1], torch.cat(hc, -1).detach())


def test_an_lstm_given_only_h_is_told_to_pass_the_pair():
    rnn, x = _lstm(), _x()
    h, _ = _h0()
    text = _refused(lambda: A.spectrum(rnn, x, k=2, h0=h))
    assert text == ("the LSTM takes h0 as a pair (h0, c0), each (L, B, H) = (2, 4, 6); got one tensor (2, 4, 6): "
                    "pass (h0, torch.zeros_like(h0)) to start its cell state at zero")
    A.spectrum(rnn, x, k=2, h0=(h, torch.zeros_like(h)))                # the fix works
    _refused(lambda: A.spectrum(nn.LSTMCell(C, H), x, k=2, h0=h[0]), "the LSTMCell takes h0 as a pair (h0, c0)",
             "(B, H) = (4, 6)", "torch.zeros_like(h0)")
    _refused(lambda: A.spectrum(nn.GRU(C, H), x, k=2, h0=_h0(layers=1)),
             "the GRU takes h0 as one tensor (L, B, H) = (1, 4, 6); got a tuple of 2 (a pair (h, c) is an LSTM's)")


def test_wrong_h0_shapes_are_named_in_the_modules_own_terms():
    rnn, x = _lstm(), _x()
    h, c = _h0()
    for bad, got in (((h[:1], c[:1]), "(1, 4, 6)"), (_h0(h=5), "(2, 4, 5)"), ((h[0, 0], c[0, 0]), "(6,)")):
        text = _refused(lambda: A.spectrum(rnn, x, k=2, h0=bad))
        assert text == ("h0 does not fit the LSTM (num_layers=2, hidden_size=6): expected (L, B, H) = (2, 4, 6) "
                        f"or unbatched (L, H) = (2, 6), got {got}")
    _refused(lambda: A.spectrum(rnn, x, k=2, h0=(h, c[:1])), "c0 does not fit the LSTM")
    _refused(lambda: A.spectrum(rnn, x, k=2, h0=(h, c[:, :1])), "h0 (2, 4, 6) and c0 (2, 1, 6) of the LSTM differ")
    _refused(lambda: A.spectrum(nn.GRUCell(C, H), x, k=2, h0=torch.zeros(B, 5)),
             "h0 does not fit the GRUCell (hidden_size=6): expected (B, H) = (4, 6)")


def test_a_batch_that_differs_from_the_inputs_batch_names_both_and_the_slices():
    rnn, x = _lstm(), _x(b=5)
    text = _refused(lambda: A.spectrum(rnn, x, k=2, h0=_h0(b=2)))
    assert text == ("h0 has batch 2 but the inputs have batch 5 (a sequence-first LSTM takes x as (T, B, C)): "
                    "give both one batch, e.g. x[:, :2] and (h0[:, :2], c0[:, :2])")
    gru = nn.GRU(C, H, batch_first=True)
    text = _refused(lambda: A.spectrum(gru, _x(b=5, batch_first=True), k=2, h0=torch.zeros(1, 2, H)))
    assert text.endswith("(a batch-first GRU takes x as (B, T, C)): give both one batch, e.g. x[:2] and h0[:, :2]")
    # and the suggested slices are accepted
    A.spectrum(rnn, x[:, :2], k=2, h0=_h0(b=2))
    A.spectrum(gru, _x(b=5, batch_first=True)[:2], k=2, h0=torch.zeros(1, 2, H))


# ------------------------------------------------------------------------ layouts
def test_a_batch_first_tensor_to_a_sequence_first_module_is_refused_with_the_shape_expected():
    rnn, h0 = _lstm(), _h0(b=B)
    x_bf = _x(t=T, b=B, batch_first=True)                                # (B, T, C) = (4, 12, 3)
    text = _refused(lambda: A.spectrum(rnn, x_bf, k=2, h0=h0))
    assert text == ("the LSTM is sequence-first (batch_first=False): expected (T, B, C) = (?, 4, 3); got (4, 12, 3), "
                    "which looks batch-first: pass x.transpose(0, 1)")
    assert torch.equal(A.spectrum(rnn, x_bf.transpose(0, 1), k=2, h0=h0), A.spectrum(rnn, _x(), k=2, h0=h0))


def test_a_sequence_first_tensor_to_a_batch_first_module_is_refused():
    torch.manual_seed(0)
    gru = nn.GRU(C, H, num_layers=2, batch_first=True)
    text = _refused(lambda: A.flossing_loss_term(gru, _x(), k=2, h0=torch.zeros(2, B, H)))
    assert text == ("the GRU is batch-first (batch_first=True): expected (B, T, C) = (4, ?, 3); got (12, 4, 3), "
                    "which looks sequence-first: pass x.transpose(0, 1)")
    # a cell steps over time-major inputs: a batch-first sequence is refused the same way
    text = _refused(lambda: A.spectrum(nn.GRUCell(C, H), _x(batch_first=True), k=2, h0=torch.zeros(B, H)))
    assert text.startswith("the GRUCell is stepped over time-major inputs: expected (T, B, C) = (?, 4, 3); got "
                           "(4, 12, 3), which looks batch-first")


def test_a_step_without_a_time_axis_is_refused_where_h0_proves_it():
    cell = nn.GRUCell(C, H)
    step = torch.randn(B, C)                                             # (B, C): what cell(x, h) takes
    text = _refused(lambda: A.spectrum(cell, step, k=2, h0=torch.zeros(B, H)))
    assert text == ("the GRUCell is stepped over time-major inputs: expected (T, B, C) = (?, 4, 3); got (4, 3) "
                    "with an h0 of batch 4, which looks like one step of the batch without a time axis: pass "
                    "x.unsqueeze(0) (one step) or the whole sequence")
    A.spectrum(cell, step.unsqueeze(0), k=2, h0=torch.zeros(B, H))       # the fix
    _refused(lambda: A.spectrum(_lstm(), torch.randn(B, C), k=2, h0=_h0()), "(T, B, C) = (?, 4, 3)",
             "without a time axis: pass x.unsqueeze(0)")
    # a 2-D sequence (T, C) with a batched h0 of another batch: unbatched input, batched state
    _refused(lambda: A.spectrum(_lstm(), torch.randn(T, C), k=2, h0=_h0()),
             "a 2-D input (12, 3) is one unbatched sequence (T, C), which takes an unbatched h0",
             "h0=(h0[:, 0], c0[:, 0])")


def test_legal_inputs_are_not_second_guessed():
    """Without h0 nothing proves a layout wrong: (T, C) is an unbatched sequence, (T, B, C) is read as the
    module declares; a square (T = B) batch with h0 is read as declared too."""
    rnn = _lstm()
    assert A.spectrum(rnn, torch.randn(T, C), k=2).shape == (2,)
    assert A.spectrum(nn.GRUCell(C, H), torch.randn(B, C), k=2).shape == (2,)        # B steps, unbatched
    assert A.spectrum(rnn, _x(t=B, b=B), k=2, h0=_h0()).shape == (B, 2)
    assert A.spectrum(rnn, 5, k=2, h0=_h0()).shape == (B, 2)                          # T steps without input


# ------------------------------------------------------------------------ dropout, relu, half precision
def test_dropout_between_layers_is_said_once_per_module():
    model = WordLM(dropout=0.2)
    x = _x()
    with pytest.warns(UserWarning) as seen:
        lam = A.spectrum(model, x, k=2)
        A.diagnostics(model, x, k=2)
        A.flossing_loss_term(model.rnn, x, k=2)
    notes = [str(w.message) for w in seen if "dropout" in str(w.message)]
    assert notes == ["dropout=0.2 between layers is not applied: the exponents are the LSTM's evaluation-mode "
                     "dynamics (measured with dropout off)"]
    assert seen[0].filename == __file__                                  # it points at the user's line
    plain = _lstm()
    plain.load_state_dict(model.rnn.state_dict())
    assert torch.equal(lam, A.spectrum(plain, x, k=2))                   # measured with dropout off
    with warnings.catch_warnings():                                      # nothing to say: no dropout applies
        warnings.simplefilter("error")
        A.spectrum(WordLM(dropout=0.2).eval(), x, k=2)                   # eval(): torch applies none either
        A.spectrum(nn.LSTM(C, H, dropout=0.0, num_layers=2), x, k=2)
        A.spectrum(_lstm(), x, k=2)


def test_relu_rnn_diagnostics_report_infinite_kappa_and_the_gradient_reach():
    torch.manual_seed(0)
    rnn = nn.RNN(C, H, num_layers=1, nonlinearity="relu")
    with torch.no_grad():       # unit 0 is always dead, the others always alive; every unit reads channel 0
        rnn.weight_hh_l0.mul_(0.3)
        rnn.weight_ih_l0.zero_()[:, 0] = 1.0
        rnn.bias_hh_l0.fill_(5.0)[0] = -100.0
    x = 0.1 * _x(t=20, b=2)
    x[3, 1, 0] = -1000.0                                                # sequence 1: every unit dead at step 4
    d = A.diagnostics(rnn, x, k=H - 1)
    st = A.module_step(rnn)
    # σ_D = 0 (unit 0's row of each one-step Jacobian is exactly 0): κ₂ = ∞, said as inf, never NaN, no error
    assert torch.isinf(d["log_kappa"]).all() and (d["log_kappa"] > 0).all()
    assert torch.isfinite(d["log_kappa_k"][:, 0]).all()                 # σ_1/σ_{D-1}: the surviving subspace
    assert torch.isinf(d["log_kappa_k"][-1, 1])                         # a zero product: singular, κ = ∞
    jac = torch.func.jacrev(lambda s: st.step(s[None], x[0, :1])[0])(torch.zeros(H))
    torch.testing.assert_close(d["log_sv"][0, 0, :-1].float(), torch.log(torch.linalg.svdvals(jac))[:-1],
                               rtol=0, atol=1e-5)
    assert d["log_sv"][0, 0, -1] == -math.inf
    # one step alone: the dead unit is found on the tangent, where the QR shows only a roundoff-sized σ_D
    one = A.diagnostics(rnn, x[:1], horizons=[1])
    assert torch.isposinf(one["log_kappa"]).all() and torch.equal(one["log_sv"][:, 0], d["log_sv"][:1, 0])
    g = d["grad_norms"]
    assert g.shape == (21, 2) and bool((g[0] > 0).all())
    assert bool((g[17:, 1] == 0).all()) and bool((g[:17, 1] > 0).all())  # nothing reaches behind step 4
    assert d["grad_reach"][1] <= 17
    for b, reach in enumerate(d["grad_reach"]):
        assert reach == math.inf or g[int(reach), b] < 1e-3 * g[0, b] <= g[int(reach) - 1, b]
    # the "Your model" report of a relu RNN: log10 κ₂ = inf, valid JSON with allow_nan
    rep = A.checkpoint_report(rnn, delay=10, k=2, steps=40, transient=10, diag_steps=20)
    assert rep["log10_kappa"][-1] == math.inf and len(rep["grad_norms"]) == 21
    assert json.loads(json.dumps(rep))["log10_kappa"][-1] == math.inf


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_modules_are_measured_in_float32(dtype):
    rnn = _lstm().to(dtype)
    x, h0 = _x(), tuple(t.to(dtype) for t in _h0())
    as32 = _lstm()                                                       # the same (rounded) weights in float32
    as32.load_state_dict({k: v.float() for k, v in rnn.state_dict().items()})
    with pytest.warns(UserWarning, match=f"the LSTM is {str(dtype)[6:]}: it is measured in float32") as seen:
        got = _all_results(rnn, x, h0)
    assert sum("measured in float32" in str(w.message) for w in seen) == 1         # once per module
    _assert_same(got, _all_results(as32, x, tuple(t.float() for t in h0)))
    assert got["spectrum"].dtype == torch.float32
    # the flossing term's gradient reaches the module's own parameters, in their dtype
    A.flossing_loss_term(rnn, x, k=3, h0=h0).backward()
    assert all(p.grad is not None and p.grad.dtype == dtype and bool(torch.isfinite(p.grad).all())
               for p in rnn.parameters())


def _floss_half(dtype):
    rnn = _lstm().to(dtype)
    before = [p.detach().clone() for p in rnn.parameters()]
    with pytest.warns(UserWarning, match="measured in float32"):
        out = A.floss(rnn, _x(), k=2, steps=3, lr=1e-2, stop_tol=None)
    assert all(p.dtype == dtype for p in rnn.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, rnn.parameters()))
    assert all(bool(torch.isfinite(p).all()) for p in rnn.parameters()), "flossing left non-finite weights"
    assert out["steps"] == 3 and out["stopped"] == "steps"


def test_floss_updates_a_bfloat16_modules_own_parameters():
    _floss_half(torch.bfloat16)


def test_floss_updates_a_float16_modules_own_parameters():
    _floss_half(torch.float16)


def test_a_later_dead_step_does_not_change_earlier_horizons():
    dead_later = torch.ones(5, 1, 2)
    dead_later[2:, 0, 1] = 0                              # unit 2 dies at step 3: T_1 = T_2 = I, T_3 singular
    d = A.diagnostics(lambda s, x: torch.relu(s) * x, dead_later, horizons=[1, 2, 3], h0=torch.ones(1, 2))
    assert torch.equal(d["log_kappa"][:, 0], torch.tensor([0.0, 0.0, math.inf], dtype=torch.float64))


def test_the_reports_take_a_whole_model_whose_lstm_is_batch_first():
    """The Your model reports read batch_first from the resolved module, not the whole model (the model has
    none: its batch-first LSTM got sequence-first bits and failed with 'steps (1) must exceed the transient')."""
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.rnn = nn.LSTM(C, H, batch_first=True)
    model = Model()
    whole = A.checkpoint_report(model, delay=10, k=2, steps=40, transient=10, diag_steps=20)
    alone = A.checkpoint_report(model.rnn, delay=10, k=2, steps=40, transient=10, diag_steps=20)
    assert whole["exponents"] == alone["exponents"]
    assert A.bit_inputs(model, 7).shape == (1, 7, C)
    csv = "\n".join(",".join(["0.5"] * C) for _ in range(200)).encode()
    assert A.load_inputs(csv, "x.csv", model).tensor.shape == (1, 200, C)   # (B, T, C): the LSTM's layout
