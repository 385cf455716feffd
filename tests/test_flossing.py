"""Tests for floss_core.flossing.flossing_loss and for flossing itself: over seeds, the default design lowers
the objective on a long window that flossing never saw, and its parts (state gradients, stopping rule,
named designs) do what they say."""
from dataclasses import replace

import pytest
import torch

from floss_core import models as M
from floss_core.flossing import flossing_loss
from floss_core.train import (LAB_FLOSS, REFERENCE_FLOSS, design_of, floss_fresh, flossing_exponents, member_q0,
                              validate_floss, with_design)


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
# What the method guarantees, over seeds, on a long window of input bits that no flossing step saw
# (float64, 1000 steps after a 100-step transient): the objective, mean λ_i² over the first k, falls.
# Single chaotic outcomes depend on the CPU's rounding (a fixed bound on one seed's λ_1 passed on one
# machine and failed on another), so the bounds are on the median over 8 seeds with a wide margin
# (measured here: the median falls to 0.01× at g = 1 and to 0.21× at g = 2, every seed lowered).
SEEDS8 = list(range(8))


@pytest.mark.parametrize("gain,factor", [(1.0, 0.2), (2.0, 0.5)])
def test_default_flossing_lowers_the_objective_on_an_independent_window(gain, factor):
    r = floss_fresh(M.ModelConfig(hidden=24, gain=gain), replace(LAB_FLOSS, k=4, stop_tol=0.0), 150, SEEDS8,
                    measure_steps=1000, measure_transient=100)
    before, after = (r["before"] ** 2).mean(1), (r["after"] ** 2).mean(1)
    assert torch.isfinite(after).all()
    assert after.median() < factor * before.median(), (before, after)
    assert int((after < before).sum()) >= 7, (before, after)


def test_stopping_rule_stops_each_member_on_its_own_check():
    model = M.ModelConfig(hidden=16, gain=1.0)
    base = replace(LAB_FLOSS, k=3, seq_len=20, transient=5, stop_every=10, stop_len=100)
    never = floss_fresh(model, replace(base, stop_tol=0.0), 30, [0, 1], measure_steps=200, measure_transient=50)
    assert never["steps_taken"] == [30, 30]
    always = floss_fresh(model, replace(base, stop_tol=100.0), 30, [0, 1], measure_steps=200, measure_transient=50)
    assert always["steps_taken"] == [10, 10]          # the first check (after stop_every steps) stops both
    # a member's steps do not depend on its neighbour: seed 1 alone stops where it stopped beside seed 0
    tol = replace(base, stop_tol=0.2)
    both = floss_fresh(model, tol, 60, [0, 1], measure_steps=200, measure_transient=50)
    alone = floss_fresh(model, tol, 60, [1], measure_steps=200, measure_transient=50)
    assert both["steps_taken"][1] == alone["steps_taken"][0]
    assert torch.equal(both["after"][1], alone["after"][0])


def _window_grads(floss, seed=0, n=12, k=3, L=24):
    model = M.ModelConfig(hidden=n, gain=1.5)
    p = {key: v.double().requires_grad_(True) for key, v in M.init_ensemble(model, 1, 1, [seed]).items()}
    x = torch.randint(0, 2, (L, 1, 1, 1), generator=torch.Generator().manual_seed(seed)).double()
    Q0 = member_q0([seed], n, k, "cpu").double()
    flossing_loss(flossing_exponents(model, p, replace(floss, k=k, transient=4, seq_len=L), x, Q0)).sum().backward()
    return {key: torch.zeros_like(p[key]) if p[key].grad is None else p[key].grad.clone() for key in ("J", "W_in", "b")}


def test_state_gradient_modes_bracket_the_full_gradient():
    full = _window_grads(replace(REFERENCE_FLOSS, state_grad="full"))
    long = _window_grads(replace(REFERENCE_FLOSS, state_grad="truncated", state_horizon=1000))
    for key in full:                                   # a horizon beyond the window is the full gradient
        assert torch.allclose(full[key], long[key], rtol=1e-10, atol=1e-12), key
    none = _window_grads(replace(REFERENCE_FLOSS, state_grad="none"))
    assert torch.count_nonzero(none["W_in"]) == 0 and torch.count_nonzero(none["b"]) == 0   # Jacobians only
    one = _window_grads(replace(REFERENCE_FLOSS, state_grad="one_step"))
    trunc1 = _window_grads(replace(REFERENCE_FLOSS, state_grad="truncated", state_horizon=1))
    for key in one:                                    # one-step = blocks of one step
        assert torch.allclose(one[key], trunc1[key], rtol=1e-10, atol=1e-12), key
    five = _window_grads(replace(REFERENCE_FLOSS, state_grad="truncated", state_horizon=5))
    assert not torch.allclose(five["J"], full["J"]) and not torch.allclose(five["J"], none["J"])


def test_flossing_designs_are_named_and_validated():
    assert design_of(LAB_FLOSS) == "lab" and design_of(REFERENCE_FLOSS) == "reference"
    assert design_of(replace(LAB_FLOSS, clip=1.0)) == "custom"
    assert with_design(replace(LAB_FLOSS, k=16, seq_len=40), "reference") == replace(REFERENCE_FLOSS, k=16, seq_len=40)
    with pytest.raises(ValueError, match="unknown flossing design 'paper'; choose one of lab, reference"):
        with_design(LAB_FLOSS, "paper")
    for field, value, message in [("state_grad", "half", "unknown state_grad"), ("state_horizon", 0, "state_horizon"),
                                  ("clip", -1.0, "clip"), ("stop_tol", -0.1, "stop_tol"), ("lr_end", 1.0, "lr_end")]:
        with pytest.raises(ValueError, match=message):
            validate_floss(replace(LAB_FLOSS, **{field: value}), 80)
