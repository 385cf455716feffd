"""Tests for adapters.lightning.FlossingCallback with Lightning's real Trainer, a few CPU steps on a tiny
LightningModule (embedding -> LSTM -> readout), and for Lightning being an optional extra.

Known answer for term mode: with plain SGD, the recurrent weights after one step with the callback differ
from those without it by exactly -lr · weight · ∇(flossing loss of the first batch's window); the
embedding's are the same (no flossing gradient reaches it).
"""
import copy
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from floss_core import adapters as A
from floss_core.adapters.hook import fitted_transient

ROOT = Path(__file__).resolve().parents[1]
V, E, H, T, B, LR = 12, 4, 8, 16, 4, 0.1


def _lightning():
    return pytest.importorskip("lightning.pytorch")


def _lm(seed=0):
    L = _lightning()

    class TinyLM(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.emb, self.rnn, self.out = nn.Embedding(V, E), nn.LSTM(E, H), nn.Linear(H, V)

        def forward(self, tokens):                      # (T, B) -> (T, B, V)
            return self.out(self.rnn(self.emb(tokens))[0])

        def training_step(self, batch, batch_idx):
            (tokens,) = batch
            tokens = tokens.T                           # the loader gives (B, T); the LSTM is sequence-first
            y = self(tokens)
            return nn.functional.cross_entropy(y[:-1].reshape(-1, V), tokens[1:].reshape(-1))

        def validation_step(self, batch, batch_idx):
            (tokens,) = batch
            self(tokens.T)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=LR)

    torch.manual_seed(seed)
    return TinyLM()


def _data(n_batches=6, seed=1, steps=T):
    tokens = torch.randint(0, V, (n_batches * B, steps), generator=torch.Generator().manual_seed(seed))
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(tokens), batch_size=B, shuffle=False)


def _fit(model, callbacks, steps, tmp_path, val=None, **kwargs):
    L = _lightning()
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
                        default_root_dir=tmp_path, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                 # the loader's num_workers advice and the like
        trainer.fit(model, _data(), val)
    return trainer


def test_term_mode_adds_exactly_the_flossing_gradient_to_the_step(tmp_path):
    from floss_core.adapters.lightning import FlossingCallback
    plain, flossed = _lm(), _lm()
    start = copy.deepcopy(plain)
    cb = FlossingCallback(k=3, every=1, weight=0.5, sample=2)
    _fit(plain, [], 1, tmp_path)
    _fit(flossed, [cb], 1, tmp_path)
    # the window of the first batch, as the hook kept it: the embedding's output, 2 sequences
    window = start.emb(next(iter(_data()))[0].T)[:, :2].detach()
    term = A.flossing_loss_term(start.rnn, window, k=3, transient=fitted_transient(None, T))
    grads = torch.autograd.grad(term, list(start.rnn.parameters()))
    for (name, p0), p1, p2, g in zip(start.rnn.named_parameters(), plain.rnn.parameters(),
                                     flossed.rnn.parameters(), grads):
        torch.testing.assert_close(p2 - p1, -LR * 0.5 * g, rtol=1e-4, atol=1e-7, msg=name)
    assert torch.equal(plain.emb.weight, flossed.emb.weight) and torch.equal(plain.out.weight, flossed.out.weight)
    assert any(not torch.equal(a, b) for a, b in zip(plain.rnn.parameters(), flossed.rnn.parameters()))
    (h,) = cb.history
    assert h["kind"] == "term" and h["loss"] == pytest.approx(float(term.detach()), rel=1e-5)
    assert not flossed.rnn._forward_hooks                                      # removed when the fit ended


def test_term_mode_every_m_batches(tmp_path):
    from floss_core.adapters.lightning import FlossingCallback
    cb = FlossingCallback(k=2, every=2, weight=0.1)
    _fit(_lm(), [cb], 5, tmp_path)
    assert [h["step"] for h in cb.history] == [0, 2, 4] and all(len(h["exponents"]) == 2 for h in cb.history)


def test_phase_mode_before_and_during_training(tmp_path):
    from floss_core.adapters.lightning import FlossingCallback
    model = _lm()
    cb = FlossingCallback(k=2, weight=0, pre_steps=3, phase_steps=2, phase_every=2, phase_lr=1e-2, stop_tol=None)
    _fit(model, [cb], 4, tmp_path)
    assert [(p["at"], p["steps"]) for p in cb.phases] == [(1, 3), (2, 2), (4, 2)]   # pre: after the first step
    assert [h["kind"] for h in cb.history] == ["phase"] * 3
    # with a sampler the pre-phase runs before the first step; a validation that rises stops it, weights restored
    model = _lm(1)
    start = [p.detach().clone() for p in model.rnn.parameters()]
    moved = lambda m: 1.0 + 100 * sum(float((p - s).norm()) for p, s in zip(m.rnn.parameters(), start))  # noqa: E731
    cb = FlossingCallback(k=2, weight=0, pre_steps=5, sampler=lambda i: torch.randn(T, 1, E), validate=moved,
                          validate_every=1, phase_lr=1e-2)
    trainer = _fit(model, [cb], 1, tmp_path)
    (p,) = cb.phases
    assert p["at"] == 0 and p["stopped"] == "validation" and p["restored_step"] == 0
    assert trainer.global_step == 1


def test_the_phases_floss_training_inputs_never_the_validation_loops(tmp_path):
    from floss_core.adapters.lightning import FlossingCallback
    cb = FlossingCallback(k=2, weight=0, phase_steps=2, phase_every_epochs=1, phase_lr=1e-2, stop_tol=None)
    # 2 training batches of T = 16 steps, validated (sanity check, then at the epoch's end) on windows of 7 steps
    _fit(_lm(), [cb], 4, tmp_path, val=_data(n_batches=1, steps=7), limit_train_batches=2, max_epochs=2)
    assert [p["at"] for p in cb.phases] == [2, 4]
    assert [h["steps"] for h in cb.history] == [T, T]


def test_bad_settings_are_refused_when_the_callback_is_made():
    _lightning()
    from floss_core.adapters.lightning import FlossingCallback
    for kwargs, msg in ((dict(k=2, phase_every=0), "phase_every"), (dict(k=2, pre_steps=-1), "pre_steps"),
                        (dict(k=2, validate=1.0), "validate must be")):
        with pytest.raises(ValueError, match=msg):
            FlossingCallback(**kwargs)
    with pytest.raises(ValueError, match=r"k must be in 1..16"):
        FlossingCallback(nn.LSTM(2, 8), k=17)


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_lightning_is_an_optional_extra():
    # importing the library and its adapters loads no lightning
    r = _python("import sys, floss_core, floss_core.adapters, floss_core.adapters.hook; "
                "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')))")
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr
    # without lightning, importing the callback says in one line which extra brings it
    r = _python("import sys; sys.modules['lightning'] = None; sys.modules['lightning.pytorch'] = None\n"
                "try:\n    import floss_core.adapters.lightning\n"
                "except ImportError as e:\n    print(e)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ('floss_core.adapters.lightning needs PyTorch Lightning: '
                                'pip install "gradient-flossing-lab[lightning]"')
