"""Tests for adapters.hook.FlossingRegularizer (issue 17, item 2) and floss()'s safety rails (item 6).

Known answers: the window the hook keeps is exactly what the module got in the user's forward pass (the
embedding's output, the h0 passed, a sample of both in the module's own format); reg() is exactly
``weight * flossing_loss_term`` of that window; nothing of the user's graph is reached from it. The
rails are tested with validation losses built to rise (deterministic), never on a training outcome.
"""
import math
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from floss_core import adapters as A
from floss_core.adapters.hook import CELL_STEPS, FlossingRegularizer, fitted_transient

C, H, V = 3, 6, 11     # input channels, hidden units, vocabulary


class LM(nn.Module):
    """A user's model: embedding -> recurrent module -> readout, its own forward."""

    def __init__(self, rnn):
        super().__init__()
        self.emb, self.rnn, self.out = nn.Embedding(V, rnn.input_size), rnn, nn.Linear(rnn.hidden_size, V)
        self.seen = None

    def forward(self, tokens, h=None):
        x = self.emb(tokens)
        self.seen = x                      # what the recurrent module really gets, for the tests
        y, h = self.rnn(x, h)
        return self.out(y), h


def _h0(rnn, B, gen):
    h = torch.randn(rnn.num_layers, B, rnn.hidden_size, generator=gen)
    return (h, torch.randn(h.shape, generator=gen)) if isinstance(rnn, nn.LSTM) else h


def _tokens(T, B, gen, batch_first=False):
    return torch.randint(0, V, (B, T) if batch_first else (T, B), generator=gen)


# ------------------------------------------------------------------------ what the hook keeps
@pytest.mark.parametrize("cls,batch_first", [(nn.LSTM, False), (nn.GRU, True), (nn.RNN, False)])
def test_the_window_kept_is_the_modules_real_input_and_h0(cls, batch_first):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = LM(cls(C, H, num_layers=2, batch_first=batch_first))
    reg = FlossingRegularizer(model, k=3, sample=2)          # the whole model: its one recurrent module
    assert reg.module is model.rnn and reg.weight == 0.01   # the default: 0.1 kept an LM at chance (README)
    h0 = _h0(model.rnn, 4, gen)
    model(_tokens(9, 4, gen, batch_first), h0)
    b = 0 if batch_first else 1
    torch.testing.assert_close(reg.inputs, model.seen.narrow(b, 0, 2), rtol=0, atol=0)
    assert reg.inputs.shape == ((2, 9, C) if batch_first else (9, 2, C)) and reg.steps() == 9
    assert not reg.inputs.requires_grad and reg.inputs.grad_fn is None
    for mine, theirs in zip(reg.h0 if cls is nn.LSTM else (reg.h0,), h0 if cls is nn.LSTM else (h0,)):
        assert mine.shape == (2, 2, H)                                    # (L, S, H): the module's own format
        torch.testing.assert_close(mine, theirs[:, :2], rtol=0, atol=0)
    assert isinstance(reg.h0, tuple) == (cls is nn.LSTM)
    model(_tokens(5, 3, gen, batch_first))                                # no h0: zeros, same format
    assert reg.steps() == 5
    for h in reg.h0 if cls is nn.LSTM else (reg.h0,):
        assert h.shape == (2, 2, H) and not h.any()


def test_reg_is_weight_times_the_flossing_term_of_the_window_and_reaches_only_the_module():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(2)
    model = LM(nn.LSTM(C, H, num_layers=2))
    reg = FlossingRegularizer(model.rnn, k=4, weight=0.3, every=1, transient=3)
    model(_tokens(20, 5, gen), _h0(model.rnn, 5, gen))
    term = reg()
    want = 0.3 * A.flossing_loss_term(model.rnn, reg.inputs, h0=reg.h0, k=4, transient=3)
    torch.testing.assert_close(term, want, rtol=0, atol=0)
    term.backward()
    assert model.emb.weight.grad is None and model.out.weight.grad is None        # detached from the user's graph
    assert model.rnn.weight_hh_l1.grad is not None and model.rnn.weight_hh_l1.grad.abs().sum() > 0
    (h,) = reg.history
    assert h["step"] == 0 and h["kind"] == "term" and len(h["exponents"]) == 4 and h["transient"] == 3
    assert h["loss"] == pytest.approx(float(want.detach()) / 0.3) and h["steps"] == 20


@pytest.mark.parametrize("cls", [nn.RNNCell, nn.GRUCell, nn.LSTMCell, nn.RNN, nn.GRU, nn.LSTM])
def test_every_module_type_in_train_and_eval_and_no_grad(cls):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(3)
    m = cls(C, H)
    reg = FlossingRegularizer(m, k=2, every=1, sample=2)
    cell = cls in (nn.RNNCell, nn.GRUCell, nn.LSTMCell)
    lstm = cls in (nn.LSTMCell, nn.LSTM)
    for mode in ("train", "eval"):
        getattr(m, mode)()
        with torch.no_grad():
            x = torch.randn(8, 4, C, generator=gen)
            if cell:
                h = None
                for t in range(8):
                    h = m(x[t], h)
            else:
                m(x)
        assert reg.steps() == 8
        torch.testing.assert_close(reg.inputs, x[:, :2], rtol=0, atol=0)
        shape = (2, H) if cell else (1, 2, H)
        assert all(v.shape == shape for v in (reg.h0 if lstm else (reg.h0,))) and isinstance(reg.h0, tuple) == lstm
        term = reg()
        assert term.requires_grad and math.isfinite(float(term.detach()))


def test_inference_mode_autocast_and_a_paused_hook():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(8)
    lstm = nn.LSTM(C, H)
    reg = FlossingRegularizer(lstm, k=2, every=1)
    x = torch.randn(10, 2, C, generator=gen)
    with torch.inference_mode():                     # Lightning validates so: the window must stay usable
        lstm(x)
    assert not reg.inputs.is_inference() and not reg.h0[0].is_inference()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        term = reg()
    assert term.dtype == torch.float32 and term.requires_grad
    torch.testing.assert_close(term, reg.weight * A.flossing_loss_term(lstm, x[:, :1], k=2, transient=3))
    reg.capturing = False
    lstm(torch.randn(4, 2, C, generator=gen))
    assert reg.steps() == 10
    reg.capturing = True
    lstm(torch.randn(4, 2, C, generator=gen))
    assert reg.steps() == 4


def test_unbatched_inputs_are_kept_as_a_batch_of_one():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(9)
    for m, x, h0 in ((nn.LSTM(C, H, num_layers=2), torch.randn(7, C, generator=gen),
                      (torch.randn(2, H, generator=gen), torch.randn(2, H, generator=gen))),
                     (nn.GRUCell(C, H), torch.randn(C, generator=gen), torch.randn(H, generator=gen))):
        reg = FlossingRegularizer(m, k=2, every=1)
        m(x, h0)
        if isinstance(m, nn.LSTM):
            torch.testing.assert_close(reg.inputs, x[:, None], rtol=0, atol=0)                 # (T, 1, C)
            torch.testing.assert_close(reg.h0[1], h0[1][:, None], rtol=0, atol=0)             # (L, 1, H)
        else:
            torch.testing.assert_close(reg.inputs, x[None, None], rtol=0, atol=0)             # (1, 1, C)
            torch.testing.assert_close(reg.h0, h0[None], rtol=0, atol=0)                      # (1, H)
        assert math.isfinite(float(reg().detach()))


def test_a_cell_keeps_one_unbroken_sequence():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(4)
    cell = nn.LSTMCell(C, H)
    reg = FlossingRegularizer(cell, k=2, max_steps=5)
    assert FlossingRegularizer(nn.GRUCell(C, H), k=2).max_steps == CELL_STEPS
    x = torch.randn(7, 2, C, generator=gen)
    hs, h = [], (torch.randn(2, H, generator=gen), torch.randn(2, H, generator=gen))
    for t in range(7):
        hs.append(h)
        h = cell(x[t], h)
    torch.testing.assert_close(reg.inputs, x[2:, :1], rtol=0, atol=0)        # the last 5 calls, sample 1
    torch.testing.assert_close(reg.h0[0], hs[2][0][:1], rtol=0, atol=0)     # the state at the first kept call
    cell(x[0], (torch.zeros(2, H), torch.zeros(2, H)))                       # not the last output: a new sequence
    assert reg.steps() == 1
    cell(x[0])                                                               # no state: a new sequence
    assert reg.steps() == 1


def test_a_packed_sequence_is_unpacked_and_cut_to_the_shortest_sample():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(5)
    gru = nn.GRU(C, H, batch_first=True)
    reg = FlossingRegularizer(gru, k=2, sample=2)
    x, h0 = torch.randn(3, 9, C, generator=gen), torch.randn(1, 3, H, generator=gen)
    gru(pack_padded_sequence(x, torch.tensor([6, 9, 4]), batch_first=True, enforce_sorted=False), h0)
    torch.testing.assert_close(reg.inputs, x[:2, :6], rtol=0, atol=0)       # the batch's own order, T = min(6, 9)
    torch.testing.assert_close(reg.h0, h0[:, :2], rtol=0, atol=0)
    assert math.isfinite(float(reg().detach()))


def test_a_last_shorter_batch_fits_the_transient():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(6)
    model = LM(nn.LSTM(C, H, num_layers=2))
    assert [fitted_transient(None, T) for T in (1, 5, 30, 60)] == [0, 1, 10, 10]
    assert fitted_transient(20, 60) == 20 and fitted_transient(20, 6) == 3
    for transient, want in ((None, 1), (16, 2)):
        reg = FlossingRegularizer(model, k=3, every=1, transient=transient)
        model(_tokens(35, 4, gen))
        reg()
        model(_tokens(5, 4, gen))                                            # the last, shorter batch
        assert math.isfinite(float(reg().detach()))
        assert [h["transient"] for h in reg.history] == [fitted_transient(transient, 35), want]
        reg.remove()


def test_every_th_call_and_the_warning_before_a_forward_pass():
    torch.manual_seed(0)
    gru = nn.GRU(C, H)
    reg = FlossingRegularizer(gru, k=2, every=3, weight=0.5)
    with pytest.warns(UserWarning, match="no forward pass of the GRU seen yet"):
        assert float(reg()) == 0.0                                           # call 0: nothing kept yet
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                       # said once
        assert float(reg()) == 0.0 and float(reg()) == 0.0
        assert float(reg()) == 0.0                                           # call 3: still nothing kept
    gru(torch.randn(12, 2, C))
    terms = [reg() for _ in range(7)]                                        # calls 4..10
    assert [bool(t != 0) for t in terms] == [False, False, True, False, False, True, False]   # calls 6 and 9
    assert not terms[0].requires_grad and terms[2].requires_grad
    assert [h["step"] for h in reg.history] == [6, 9] and reg.calls == 11


def test_remove_and_the_context_manager():
    torch.manual_seed(0)
    rnn = nn.RNN(C, H)
    with FlossingRegularizer(rnn, k=2) as reg:
        rnn(torch.randn(6, 1, C))
        assert reg.steps() == 6
    rnn(torch.randn(9, 1, C))
    assert reg.steps() == 6 and not rnn._forward_hooks                      # off the module, the window stays


def test_bad_arguments_get_one_line_errors():
    rnn = nn.RNN(C, H)
    for kwargs, msg in ((dict(k=7), r"k must be in 1..6"), (dict(k=2, every=0), "every must be"),
                        (dict(k=2, weight=-1.0), "weight must be"), (dict(k=2, sample=0), "sample must be"),
                        (dict(k=2, transient=-1), "transient must be"), (dict(k=2, max_steps=0), "max_steps must be"),
                        (dict(k=2, state_horizon=0), "state_horizon")):
        with pytest.raises(ValueError, match=msg):
            FlossingRegularizer(rnn, **kwargs)
    with pytest.raises(ValueError, match="hooks a torch nn.RNN"):
        FlossingRegularizer(nn.Linear(3, 3), k=1)
    with pytest.raises(ValueError, match="holds 2 recurrent modules"):
        FlossingRegularizer(nn.ModuleDict({"a": nn.GRU(2, 3), "b": nn.LSTM(2, 3)}), k=1)
    with pytest.raises(ValueError, match="nothing captured yet"):
        FlossingRegularizer(rnn, k=2).phase(steps=2)


# ------------------------------------------------------------------------ the phase
def test_phase_on_the_window_kept_and_on_a_sampler():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(7)
    model = LM(nn.GRU(C, H, batch_first=True))
    reg = FlossingRegularizer(model, k=3, sample=2)
    with torch.no_grad():
        model(_tokens(25, 4, gen, batch_first=True))
    before = model.rnn.weight_hh_l0.detach().clone()
    out = reg.phase(steps=4, lr=1e-2, stop_tol=None)
    assert out["steps"] == 4 and out["stopped"] == "steps" and not torch.equal(before, model.rnn.weight_hh_l0)
    assert model.emb.weight.grad is None
    last = reg.history[-1]
    assert last["kind"] == "phase" and last["steps"] == 25 and len(last["exponents"]) == 3
    calls = []

    def sampler(i):
        calls.append(i)
        return torch.randn(2, 12, C, generator=gen)                          # the module's layout: (B, T, C)
    out = reg.phase(steps=3, lr=1e-2, sampler=sampler, stop_tol=None)
    assert out["steps"] == 3 and calls == [0, 1, 2]                          # the first window is used, not drawn twice
    assert reg.history[-1]["transient"] == 4 and reg.history[-1]["steps"] == 12


# ------------------------------------------------------------------------ floss()'s safety rails
def _gru_and_window(seed=0):
    torch.manual_seed(seed)
    return nn.GRU(1, 4), torch.randint(0, 2, (20, 1, 1), generator=torch.Generator().manual_seed(seed)).float()


def test_a_validation_loss_that_rises_stops_the_phase_and_restores_the_weights():
    gru, x = _gru_and_window()
    start = [p.detach().clone() for p in gru.parameters()]
    # the "task loss" grows with the distance the weights moved: any flossing step makes it rise
    moved = lambda: 1.0 + 100 * sum(float((p - s).norm()) for p, s in zip(gru.parameters(), start))  # noqa: E731
    out = A.floss(gru, x, k=2, steps=20, lr=1e-2, transient=5, validate=moved, validate_every=3)
    assert out["stopped"] == "validation" and out["steps"] == 3 and out["restored_step"] == 0
    assert out["validation_before"] == out["validation_after"] == 1.0 and out["validation"][1][0] == 3
    assert all(torch.equal(p, s) for p, s in zip(gru.parameters(), start))      # back where it started


def test_restored_weights_are_those_of_the_last_check_that_passed():
    gru, x = _gru_and_window(1)
    values, seen = iter([2.0, 2.4, -1.0, 2.6]), []                             # before, pass, pass, > 1.25 × 2

    def validate():
        seen.append([p.detach().clone() for p in gru.parameters()])
        return next(values)
    out = A.floss(gru, x, k=2, steps=50, lr=1e-2, transient=5, validate=validate, validate_every=2, stop_tol=None)
    assert out["stopped"] == "validation" and out["steps"] == 6 and out["restored_step"] == 4
    assert out["validation"] == [[0, 2.0], [2, 2.4], [4, -1.0], [6, 2.6]]
    assert out["validation_before"] == 2.0 and out["validation_after"] == -1.0
    assert all(torch.equal(p, s) for p, s in zip(gru.parameters(), seen[2]))
    # a check after the last step too, and a NaN counts as a rise
    gru, x = _gru_and_window(2)
    values = iter([1.0, float("nan")])
    out = A.floss(gru, x, k=2, steps=3, lr=1e-2, transient=5, validate=lambda: next(values), validate_every=10)
    assert out["stopped"] == "validation" and out["validation"][-1][0] == 3 and math.isnan(out["validation"][-1][1])
    assert out["restored_step"] == 0 and out["validation_after"] == 1.0


def test_a_validation_that_holds_runs_every_step_and_reports_before_and_after():
    gru, x = _gru_and_window(3)
    out = A.floss(gru, x, k=2, steps=5, lr=1e-2, transient=5, validate=lambda: torch.tensor(0.5),
                  validate_every=2, stop_tol=None)
    assert out["stopped"] == "steps" and out["steps"] == 5 and out["restored_step"] is None
    assert [s for s, _ in out["validation"]] == [0, 2, 4, 5] and out["validation_after"] == 0.5
    with pytest.raises(ValueError, match="not a finite number before flossing"):
        A.floss(gru, x, k=2, steps=2, validate=lambda: float("inf"))
    for kwargs, msg in ((dict(validate=3.0), "validate must be a callable"), (dict(max_rise=0.9), "max_rise"),
                        (dict(validate_every=0), "validate_every"), (dict(stop_tol=-1), "stop_tol"),
                        (dict(stop_window=0), "stop_window")):
        with pytest.raises(ValueError, match=msg):
            A.floss(gru, x, k=2, steps=2, **kwargs)


def test_the_phase_stops_at_the_target():
    gru, x = _gru_and_window(4)
    # every window is within a wide tolerance: it stops once the running mean has stop_window windows
    out = A.floss(gru, x, k=2, steps=30, lr=1e-2, transient=5, stop_tol=10.0, stop_window=4)
    assert out["stopped"] == "target" and out["steps"] == 4
    # a target the exponents cannot reach in a few steps: it runs them all
    out = A.floss(gru, x, k=2, steps=6, lr=1e-2, transient=5, target=5.0, stop_window=2)
    assert out["stopped"] == "steps" and out["steps"] == 6
    out = A.floss(gru, x, k=2, steps=3, lr=1e-2, transient=5, stop_tol=None)
    assert out["stopped"] == "steps" and out["steps"] == 3


def test_a_non_finite_window_stops_the_phase_as_diverged():
    gru, x = _gru_and_window(5)
    before = [p.detach().clone() for p in gru.parameters()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                   # the spectrum's own warning about the NaN window
        out = A.floss(gru, lambda i: x if i < 2 else x * float("nan"), k=2, steps=5, lr=1e-2, transient=5,
                      validate=lambda: 1.0, validate_every=1)
    assert out["stopped"] == "diverged" and out["diverged_step"] == 2 and out["steps"] == 2
    assert not all(torch.equal(p, s) for p, s in zip(gru.parameters(), before))


def test_phase_passes_the_rails_on():
    torch.manual_seed(0)
    gru = nn.GRU(C, H)
    reg = FlossingRegularizer(gru, k=2)
    gru(torch.randn(15, 2, C))
    start = [p.detach().clone() for p in gru.parameters()]

    def moved():                       # a validation loss through the model's forward, growing as the weights move
        gru(torch.randn(4, 1, C))
        return 1.0 + 100 * sum(float((p - s).norm()) for p, s in zip(gru.parameters(), start))
    out = reg.phase(steps=10, lr=1e-2, validate=moved, validate_every=2)
    assert out["stopped"] == "validation" and all(torch.equal(p, s) for p, s in zip(gru.parameters(), start))
    assert reg.steps() == 15 and reg.capturing                      # the validation's forward kept nothing
