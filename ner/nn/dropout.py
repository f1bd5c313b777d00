"""Element-wise dropout, as ``torch.nn.Dropout`` computes it, with its mask drawn from uniform numbers.

On CPU torch's dropout draws every element through a serial Bernoulli sampler: 19 ms for a training batch's
(28, 41, 800) features, where ``torch.rand`` takes 7 ms (BENCHMARKS.md, "Training throughput against Flair").
Here an element is kept where a uniform number in [0, 1) is at least ``p`` (probability ``1 - p``) and scaled by
``1 / (1 - p)``; the backward pass multiplies by the same kept-and-scaled mask, saved as booleans.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class _KeepAndScale(torch.autograd.Function):
    """``x * keep * scale`` with ``keep`` (bool, like x) saved for the backward pass."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return x.mul(keep).mul_(scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (keep,) = ctx.saved_tensors
        return grad.mul(keep).mul_(ctx.scale), None, None


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``x`` with each element zeroed with probability ``p`` and the rest scaled by ``1 / (1 - p)`` when
    ``training``; ``x`` itself otherwise (or when ``p`` is 0)."""
    _check_probability(p)
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    keep = torch.rand(x.shape, device=x.device) >= p  # float32 draws whatever x's dtype: P(keep) = 1 - p
    return _KeepAndScale.apply(x, keep, 1.0 / (1.0 - p))


class Dropout(nn.Module):
    """``torch.nn.Dropout`` with ``dropout``'s mask."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        _check_probability(p)
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _check_probability(p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
