"""Tests for floss_core.flossing.flossing_loss and for flossing itself: a chaotic net flossed for a few
hundred Adam steps has its first k exponents near 0 on a long window afterwards."""
import math

import pytest
import torch

from floss_core import models as M
from floss_core.flossing import flossing_loss
from floss_core.lyapunov import random_orthonormal
from floss_core.train import EnsembleAdam, FlossConfig, floss_phase, measure_spectrum, member_generators


# ------------------------------------------------------------------------------ the loss
def test_flossing_loss_closed_form():
    lam = torch.tensor([0.3, -0.1, 0.0, -0.4])
    assert torch.allclose(flossing_loss(lam), torch.tensor((0.09 + 0.01 + 0.0 + 0.16) / 4))
    assert flossing_loss(torch.zeros(5)) == 0


def test_flossing_loss_target_shifts():
    lam = torch.tensor([0.3, -0.1, 0.0, -0.4])
    assert torch.allclose(flossing_loss(lam, target=-0.1), torch.tensor((0.16 + 0.0 + 0.01 + 0.09) / 4))
    assert flossing_loss(torch.full((3,), -0.25), target=-0.25) == 0
    assert torch.allclose(flossing_loss(lam + 0.7, target=0.7), flossing_loss(lam))


def test_flossing_loss_shape_is_one_per_network():
    lam = torch.arange(12, dtype=torch.float64).reshape(3, 4) / 10   # (E, k)
    loss = flossing_loss(lam)
    assert loss.shape == (3,)
    for e in range(3):
        assert torch.allclose(loss[e], (lam[e] ** 2).mean())
    assert flossing_loss(torch.zeros(2, 5, 4)).shape == (2, 5)


def test_flossing_loss_gradient():
    lam = torch.tensor([[0.2, -0.4]], dtype=torch.float64, requires_grad=True)
    flossing_loss(lam, target=0.1).sum().backward()
    assert torch.allclose(lam.grad, torch.tensor([[2 * 0.1 / 2, 2 * -0.5 / 2]], dtype=torch.float64))


# ------------------------------------------------------------------------------ flossing works
# A vanilla RNN with g = 2 is chaotic without input (λ_1 ≈ 0.2-0.3 per step at N = 16). Flossing drives the
# first k exponents of the window to 0; the check is on a long window (1000 steps) with a different start.
# The input weights are zeroed and not flossed, so flossing windows and the check see the same
# autonomous dynamics (floss_phase draws input bits; with W_in = 0 they do not reach the state).
N, K, SEEDS = 16, 2, [0, 1, 2]


def test_flossing_a_chaotic_net_brings_the_first_k_exponents_to_zero():
    model = M.ModelConfig(hidden=N, gain=2.0)
    p = M.init_ensemble(model, 1, 1, SEEDS)
    p["W_in"].zero_()
    params = {k: v.requires_grad_(True) for k, v in p.items()}
    before = measure_spectrum(model, params, K, steps=1000, transient=100, inputs="none")
    assert (before[:, 0] > 0.1).all(), before           # chaotic to start with

    floss = FlossConfig(k=K, seq_len=FLOSS_LEN, transient=FLOSS_TRANSIENT, lr=FLOSS_LR)
    opt = EnsembleAdam([params["J"], params["b"]], lr=floss.lr)
    Q0 = random_orthonormal(N, K, generator=torch.Generator().manual_seed(4))
    history = floss_phase(model, params, floss, FLOSS_STEPS, opt=opt, generators=member_generators(SEEDS, 3),
                          Q0=Q0, channels=1, active=torch.ones(len(SEEDS), dtype=torch.bool))
    losses = torch.stack(history)
    assert losses[-20:].mean() < losses[:10].mean()      # the flossing loss went down

    for seed in (0, 5):  # two different long windows
        after = measure_spectrum(model, params, K, steps=1000, transient=100, inputs="none", seed=seed)
        assert after.abs().max() < 0.05, after
    assert torch.isfinite(after).all() and not math.isnan(float(after.sum()))
