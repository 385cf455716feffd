"""The optimiser and gradient clipping of an ensemble: every member as if it trained alone.

``EnsembleAdam`` is ``torch.optim.Adam`` per member over stacked parameters (a leading E dimension),
with a mask of the members that step; ``clip_per_member`` clips each parameter array of each member on
its own (the reference's per-array clipping); ``clip_some`` is that clipping for a subset of members
(flossing's ``clip_chaotic_only``); ``cosine_lr`` is flossing's learning-rate decay.
"""
from __future__ import annotations

import math

import torch


class EnsembleAdam:
    """Adam (Kingma & Ba) over stacked ensemble parameters with per-member step counts.

    Exactly ``torch.optim.Adam`` for each member separately (tests check this), plus a per-member
    ``active`` mask: inactive members (diverged, or not flossing in an adaptive phase) are not
    touched at all, not even by momentum, so they stay what separate runs would be."""

    def __init__(self, params: list[torch.Tensor], *, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        e = params[0].shape[0]
        self.t = torch.zeros(e, dtype=torch.float64, device=params[0].device)
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> None:
        b1, b2 = self.betas
        self.t += active.to(self.t.dtype)
        bc1 = (1 - b1 ** self.t).clamp_min(1e-300)
        bc2 = (1 - b2 ** self.t).clamp_min(1e-300)
        every = bool(active.all())      # the usual case: no masking, in place (the same numbers)
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            shape = (-1,) + (1,) * (p.dim() - 1)
            a = active.view(shape)
            g = p.grad
            if every:
                m.mul_(b1).add_((1 - b1) * g)
                v.mul_(b2).add_((1 - b2) * g * g)
            else:
                m.copy_(torch.where(a, b1 * m + (1 - b1) * g, m))
                v.copy_(torch.where(a, b2 * v + (1 - b2) * g * g, v))
            denom = (v / bc2.to(p.dtype).view(shape)).sqrt() + self.eps
            update = self.lr * (m / bc1.to(p.dtype).view(shape)) / denom
            if every:
                p.sub_(update)
            else:
                p.copy_(torch.where(a, p - update, p))

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None


@torch.no_grad()
def clip_per_member(params: list[torch.Tensor], max_norm) -> torch.Tensor:
    """Clip each parameter array of each member to norm ``max_norm`` on its own (the reference's
    per-array clipping, as torch.nn.utils.clip_grad_norm_ applied to one array of one network);
    ``max_norm`` a float (0: no clipping) or an (E,) tensor, one bound per member (inf: none).
    Returns the members' total gradient norms before clipping, (E,)."""
    total = 0.0
    for p in params:
        if p.grad is None:
            continue
        norm = p.grad.reshape(p.shape[0], -1).norm(dim=1)          # (E,)
        total = total + norm ** 2
        if isinstance(max_norm, torch.Tensor) or max_norm > 0:      # a tensor: one bound per member (inf: none)
            coef = (max_norm / (norm + 1e-6)).clamp(max=1.0)
            p.grad.mul_(coef.view((-1,) + (1,) * (p.dim() - 1)))
    return torch.sqrt(torch.as_tensor(total))


def clip_some(params: list[torch.Tensor], max_norm: float, only: torch.Tensor | None = None) -> None:
    """``clip_per_member`` to ``max_norm`` (0: nothing happens) for the members where ``only`` (E,) bool
    is True, every member when ``only`` is None; the others keep their gradients as they are."""
    if max_norm > 0:
        clip_per_member(params, max_norm if only is None else torch.where(only, max_norm, math.inf))


def cosine_lr(lr: float, lr_end: float | None, i: int, n_steps: int) -> float:
    """The learning rate at step i of an n_steps phase: ``lr`` throughout (``lr_end`` None, or a phase of
    one step), else a cosine from ``lr`` at the first step to ``lr_end`` at the last."""
    if lr_end is None or n_steps <= 1:
        return lr
    return lr_end + 0.5 * (lr - lr_end) * (1 + math.cos(math.pi * i / (n_steps - 1)))
