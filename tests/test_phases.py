"""Tests for floss_core.phases: the fused flossing window (sequence and window kernels) against the unfused
reference (step loop, Householder QR, autograd)."""
import pytest
import torch

from floss_core import models as M
from floss_core.configs import FlossConfig
from floss_core.phases import flossing_exponents, member_q0


@pytest.mark.parametrize("through_states, qr_every", [(True, 1), (False, 1), (True, 2)])
def test_fused_flossing_window_equals_the_unfused_reference(through_states, qr_every):
    # qr='auto' on an rnn: states from the fused sequence kernel, tangents and CholeskyQR in the window kernel
    # with its hand-written backward; fused=False: the step loop, Householder QR, autograd. Same exponents,
    # same gradient for every flossed parameter.
    model = M.ModelConfig(hidden=7, gain=1.8, relax_steps=5)
    base = {k: v.double() for k, v in M.init_ensemble(model, 2, 1, [3, 4]).items()}
    floss = FlossConfig(k=5, seq_len=13, transient=3, qr_every=qr_every, through_states=through_states)
    inputs = torch.randint(0, 2, (13, 2, 2, 2), generator=torch.Generator().manual_seed(1)).double()
    Q0 = member_q0([3, 4], 7, 5, "cpu").double()
    weights = torch.linspace(-1.0, 2.0, 5, dtype=torch.float64)
    got = {}
    for fused in (True, False):
        p = {k: v.clone().requires_grad_(True) for k, v in base.items()}
        lam = flossing_exponents(model, p, floss, inputs, Q0, fused=fused)
        (lam * weights).sum().backward()
        got[fused] = [lam.detach()] + [p[k].grad for k in ("J", "W_in", "b")]
    for a, b in zip(got[True], got[False]):
        assert (a is None and b is None) or torch.allclose(a, b, atol=1e-9, rtol=0)
    # the input weights reach the exponents only through the states
    assert (got[True][2] is None) == (not through_states) and got[True][1].abs().max() > 0
