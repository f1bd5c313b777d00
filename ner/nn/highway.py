"""Highway layers (Srivastava et al. 2015): ``y = g * x + (1 - g) * f(A x + a)``, ``g = sigmoid(B x + b)``.

Each layer holds one ``Linear(dim, 2 * dim)``: rows ``0:dim`` are the transform ``A, a`` and rows
``dim:2*dim`` the gate ``B, b`` (AllenNLP's layout). ``g`` is the *carry* gate: g = 1 passes ``x`` through.
bilm-tf writes the same layer with a transform gate ``c = sigmoid(x W_carry + b_carry)``, so ``g = 1 - c``
and ``B = -W_carry^T``, ``b = -b_carry`` (see ``ner.elmo.weights``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class Highway(nn.Module):
    """A stack of ``num_layers`` highway layers of width ``dim``; input ``(..., dim)`` -> ``(..., dim)``.

    Args:
        dim: input and output width.
        num_layers: number of stacked layers.
        activation: ``f`` of the transform branch (ELMo always uses relu).
        gate_bias: initial gate bias ``b``; positive values start the layers close to the identity
            (bilm-tf initialises ``b_carry = -2``, i.e. ``b = +2``).
    """

    def __init__(
        self,
        dim: int,
        num_layers: int = 1,
        activation: Callable[[torch.Tensor], torch.Tensor] = torch.relu,
        gate_bias: float = 1.0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.activation = activation
        self.layers = nn.ModuleList(nn.Linear(dim, 2 * dim) for _ in range(num_layers))
        for layer in self.layers:
            nn.init.constant_(layer.bias[dim:], gate_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            transform, gate = layer(x).chunk(2, dim=-1)  # (..., dim) each
            carry = torch.sigmoid(gate)
            x = carry * x + (1.0 - carry) * self.activation(transform)
        return x
