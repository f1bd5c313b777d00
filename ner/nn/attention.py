"""Self-attention over a sentence's encoder states: each token's BiLSTM state is joined by what the other tokens
of its sentence say about it (multi-head attention), with a residual connection and layer normalisation."""

from __future__ import annotations

import torch
from torch import nn


class StateAttention(nn.Module):
    """``LayerNorm(h + MultiHeadAttention(h, h, h))`` over each sentence's states, padding masked out of the
    keys and zeroed in the output.

    hidden (B, T, C), mask (B, T) bool -> (B, T, C). ``C`` must be divisible by ``heads``.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention: {heads} heads do not divide the state size {dim}")
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        attended, _ = self.attention(hidden, hidden, hidden, key_padding_mask=~mask, need_weights=False)  # (B, T, C)
        return self.norm(hidden + attended) * mask[..., None]  # (B, T, C), zero at padding
