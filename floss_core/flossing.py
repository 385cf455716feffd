"""The gradient-flossing loss (Engelken, NeurIPS 2023, eq. 4).

A pure function; training code composes it with ``lyapunov_spectrum`` and an optimiser, either in
separate flossing phases or added to the task loss.
"""
from __future__ import annotations

import torch


def flossing_loss(exponents: torch.Tensor, *, target: float = 0.0) -> torch.Tensor:
    """Mean over the k exponents of (λ_i − target)².

    Args:
      exponents: (..., k) Lyapunov exponents (differentiable), e.g. (E, k) for an ensemble.
    Returns:
      (...) one loss per network. Sum it over the ensemble, do not average: each member's
      gradient must not depend on how many members train beside it.
    """
    return ((exponents - target) ** 2).mean(dim=-1)
