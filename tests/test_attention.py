"""Self-attention over the BiLSTM states: padding never reaches a real token, residual + layer norm, checked
against attention computed by hand for each sentence alone."""

from __future__ import annotations

import math

import pytest
import torch

from ner.nn.attention import StateAttention


def by_hand(layer: StateAttention, states: torch.Tensor) -> torch.Tensor:
    """One sentence's states (T, C) through the layer's weights, written out: softmax(QK^T / sqrt(d)) V per head."""
    attention, heads = layer.attention, layer.attention.num_heads
    dim = states.shape[1]
    q, k, v = (states @ w.T + b for w, b in zip(attention.in_proj_weight.chunk(3), attention.in_proj_bias.chunk(3)))
    split = [x.view(len(states), heads, dim // heads).transpose(0, 1) for x in (q, k, v)]  # each (heads, T, d)
    weights = torch.softmax(split[0] @ split[1].transpose(1, 2) / math.sqrt(dim // heads), dim=-1)  # (heads, T, T)
    mixed = (weights @ split[2]).transpose(0, 1).reshape(len(states), dim)  # (T, C)
    attended = attention.out_proj(mixed)
    return torch.nn.functional.layer_norm(states + attended, (dim,), layer.norm.weight, layer.norm.bias)


def test_a_padded_batch_equals_each_sentence_alone_by_hand() -> None:
    torch.manual_seed(0)
    layer = StateAttention(dim=12, heads=3).eval()
    lengths = [5, 2, 7]
    states = torch.randn(3, 7, 12)  # padding positions hold garbage on purpose
    mask = torch.arange(7)[None, :] < torch.tensor(lengths)[:, None]  # (3, 7)
    with torch.no_grad():
        out = layer(states, mask)
        for row, length in enumerate(lengths):
            torch.testing.assert_close(out[row, :length], by_hand(layer, states[row, :length]), rtol=1e-5, atol=1e-5)
            assert torch.all(out[row, length:] == 0)


def test_heads_must_divide_the_state_size() -> None:
    with pytest.raises(ValueError, match="attention: 7 heads do not divide the state size 12"):
        StateAttention(dim=12, heads=7)
