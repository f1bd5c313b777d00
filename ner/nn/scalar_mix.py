"""ELMo's scalar mix of layers: ``mix = gamma * sum_k softmax(w)_k * A_k`` (Peters et al. 2018, eq. 1).

With ``do_layer_norm`` each layer ``A_k`` is first normalised with **one scalar mean and variance over the
whole batch**: every unmasked position and every feature dimension together (not per token as in
``nn.LayerNorm``), no affine parameters, ``A_norm = (A - mean) / sqrt(var + eps)`` with eps 1e-13 (1e-4 for
16-bit floats). This is exactly AllenNLP's ``ScalarMix``; for ELMo the mask includes ``<S>``/``</S>``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ScalarMix(nn.Module):
    """Softmax-weighted, gamma-scaled sum of ``num_layers`` same-shaped tensors.

    Args:
        num_layers: number of tensors mixed.
        do_layer_norm: normalise each tensor over the masked batch first (needs ``mask`` in ``forward``).
        initial_scalar_parameters: initial pre-softmax weights ``w`` (default all 0, i.e. a plain mean).
        initial_gamma: initial ``gamma``.
        trainable: whether ``w`` and ``gamma`` receive gradients.
        l2_coef: coefficient of ``penalty() = l2_coef * sum(w ** 2)`` (bilm-tf's regulariser; 0 disables).
    """

    def __init__(
        self,
        num_layers: int,
        do_layer_norm: bool = False,
        initial_scalar_parameters: Sequence[float] | None = None,
        initial_gamma: float = 1.0,
        trainable: bool = True,
        l2_coef: float = 0.0,
    ) -> None:
        super().__init__()
        if initial_scalar_parameters is None:
            initial_scalar_parameters = [0.0] * num_layers
        if len(initial_scalar_parameters) != num_layers:
            raise ValueError(
                f"initial_scalar_parameters has {len(initial_scalar_parameters)} values, expected num_layers "
                f"= {num_layers}"
            )
        self.num_layers = num_layers
        self.do_layer_norm = do_layer_norm
        self.l2_coef = l2_coef
        self.scalar_parameters = nn.Parameter(
            torch.tensor([float(w) for w in initial_scalar_parameters]), requires_grad=trainable
        )
        self.gamma = nn.Parameter(torch.tensor([float(initial_gamma)]), requires_grad=trainable)

    def forward(self, tensors: Sequence[torch.Tensor] | torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mix ``tensors``: a list of ``num_layers`` tensors ``(batch, ..., dim)`` or one stacked
        ``(num_layers, batch, ..., dim)``; ``mask`` is ``(batch, ...)`` bool. Returns ``(batch, ..., dim)``."""
        if len(tensors) != self.num_layers:
            raise ValueError(f"got {len(tensors)} tensors, expected num_layers = {self.num_layers}")
        if self.do_layer_norm and mask is None:
            raise ValueError("do_layer_norm=True needs a mask")
        if self.do_layer_norm:
            tensors = [_masked_batch_norm(tensor, mask) for tensor in tensors]
        stacked = tensors if isinstance(tensors, torch.Tensor) else torch.stack(list(tensors))  # (layers, batch, ...)
        weights = self.gamma * torch.softmax(self.scalar_parameters, dim=0)  # (num_layers,)
        return torch.tensordot(weights.to(stacked.dtype), stacked, dims=1)  # (batch, ..., dim), one pass

    def penalty(self) -> torch.Tensor:
        """L2 regulariser on the pre-softmax weights: ``l2_coef * sum(w ** 2)``."""
        return self.l2_coef * (self.scalar_parameters**2).sum()


def _masked_batch_norm(tensor: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Normalise ``tensor`` (batch, ..., dim) by its mean and variance over all masked positions and dims."""
    weights = mask.unsqueeze(-1).to(tensor.dtype)  # (batch, ..., 1)
    count = weights.sum() * tensor.size(-1)
    masked = tensor * weights
    mean = masked.sum() / count
    variance = (((masked - mean) * weights) ** 2).sum() / count
    eps = 1e-4 if tensor.dtype in (torch.float16, torch.bfloat16) else 1e-13
    return (tensor - mean) / torch.sqrt(variance + eps)
