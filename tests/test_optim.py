"""Tests for floss_core.optim: EnsembleAdam against torch's Adam per member (inactive members untouched,
float32 and float64, the in-place and masked paths), and per-member clipping against clip_grad_norm_."""
import math

import pytest
import torch

from floss_core.optim import EnsembleAdam, clip_per_member


# ------------------------------------------------------------------------------ optimiser and clipping
def test_ensemble_adam_equals_torch_adam_per_member_and_skips_inactive():
    g = torch.Generator().manual_seed(0)
    E = 3
    shapes = [(4, 5), (4,), ()]
    init = [torch.randn(E, *s, generator=g, dtype=torch.float64) for s in shapes]
    params = [p.clone().requires_grad_(True) for p in init]
    opt = EnsembleAdam(params, lr=0.05, betas=(0.8, 0.99), eps=1e-6)
    refs = [[p[e].clone().requires_grad_(True) for p in init] for e in range(E)]
    ref_opts = [torch.optim.Adam(r, lr=0.05, betas=(0.8, 0.99), eps=1e-6) for r in refs]
    masks = [[1, 1, 1], [1, 0, 1], [1, 0, 1], [0, 1, 1], [1, 1, 0], [1, 1, 1]]
    for mask in masks:
        grads = [torch.randn(E, *s, generator=g, dtype=torch.float64) for s in shapes]
        for p, gr in zip(params, grads):
            p.grad = gr.clone()
        opt.step(torch.tensor(mask, dtype=torch.bool))
        for e in range(E):
            if mask[e]:
                for r, gr in zip(refs[e], grads):
                    r.grad = gr[e].clone()
                ref_opts[e].step()
    for e in range(E):
        for p, r in zip(params, refs[e]):
            assert torch.allclose(p[e], r, atol=1e-12, rtol=0), e
    # an always-inactive member is not touched at all
    frozen = [p.clone().requires_grad_(True) for p in init]
    opt2 = EnsembleAdam(frozen, lr=0.05)
    for _ in range(3):
        for p in frozen:
            p.grad = torch.ones_like(p)
        opt2.step(torch.tensor([True, False, True]))
    for p, p0 in zip(frozen, init):
        assert torch.equal(p[1], p0[1]) and not torch.equal(p[0], p0[0])
    assert opt2.t.tolist() == [3, 0, 3]


def test_ensemble_adam_in_place_path_equals_the_masked_path_bit_for_bit():
    # all members active takes the in-place path; a spare inactive member forces torch.where for the rest
    g = torch.Generator().manual_seed(2)
    init = torch.randn(3, 5, generator=g)
    a, b = init[:2].clone().requires_grad_(True), init.clone().requires_grad_(True)
    oa, ob = EnsembleAdam([a], lr=1e-2), EnsembleAdam([b], lr=1e-2)
    for _ in range(4):
        gr = torch.randn(3, 5, generator=g)
        a.grad, b.grad = gr[:2].clone(), gr.clone()
        oa.step(torch.ones(2, dtype=torch.bool))
        ob.step(torch.tensor([True, True, False]))
    assert torch.equal(a.detach(), b.detach()[:2]) and torch.equal(oa.m[0], ob.m[0][:2])


def test_ensemble_adam_float32_matches_torch_adam():
    g = torch.Generator().manual_seed(1)
    init = torch.randn(2, 6, generator=g)
    p = init.clone().requires_grad_(True)
    opt = EnsembleAdam([p], lr=1e-3)
    ref = [init[e].clone().requires_grad_(True) for e in range(2)]
    ropt = [torch.optim.Adam([r], lr=1e-3) for r in ref]
    for _ in range(20):
        gr = torch.randn(2, 6, generator=g)
        p.grad = gr.clone()
        opt.step(torch.ones(2, dtype=torch.bool))
        for e in range(2):
            ref[e].grad = gr[e].clone()
            ropt[e].step()
    for e in range(2):
        assert torch.allclose(p[e], ref[e], atol=1e-6, rtol=0)


@pytest.mark.parametrize("max_norm", [0.03, 1.0, 0.0])
def test_clip_per_member_equals_clip_grad_norm_per_array(max_norm):
    g = torch.Generator().manual_seed(2)
    shapes = [(3, 4, 5), (3, 4), (3, 1)]
    grads = [torch.randn(*s, generator=g, dtype=torch.float64) * 0.05 for s in shapes]
    grads[0][1] *= 100          # member 1 has a big gradient in the first array only
    params = [torch.zeros(*s, dtype=torch.float64, requires_grad=True) for s in shapes]
    for p, gr in zip(params, grads):
        p.grad = gr.clone()
    norms = clip_per_member(params, max_norm)
    for e in range(3):
        total = 0.0
        for p, gr in zip(params, grads):
            ref = torch.zeros_like(gr[e], requires_grad=True)
            ref.grad = gr[e].clone()
            if max_norm > 0:
                n = torch.nn.utils.clip_grad_norm_([ref], max_norm)
            else:
                n = gr[e].norm()
            total += float(n) ** 2
            assert torch.allclose(p.grad[e], ref.grad, atol=1e-15, rtol=1e-12)
        assert math.isclose(float(norms[e]), math.sqrt(total), rel_tol=1e-12)
    if max_norm == 0.03:
        assert params[0].grad[1].norm() <= 0.03 + 1e-9 and grads[0][1].norm() > 1
