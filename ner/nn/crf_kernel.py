"""The CRF's inference loops in C++ (``crf_kernel.cpp``, built by ``ner.nn.kernels``): Viterbi and the
forward-backward log scores for ``ner.nn.crf.CRF`` on CPU, where its PyTorch loops dispatch a few ops per step
of the batch from Python. Same numbers (``crf_kernel.cpp`` says how close); wherever the kernels cannot be built,
or a gradient is wanted, the CRF runs its PyTorch loops.

Shapes: B sentences, T steps, K tags; ``mask`` (B, T) left-aligned (checked by the CRF).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ner.nn.kernels import available


def supports(emissions: Tensor) -> bool:
    """Whether the kernel takes these emissions: on CPU, no gradient wanted."""
    return emissions.device.type == "cpu" and not torch.is_grad_enabled() and available()


def viterbi(emissions: Tensor, mask: Tensor, start: Tensor, transitions: Tensor, end: Tensor) -> Tensor:
    """Best paths (B, T) int64, 0 at padding: emissions (B, T, K) and scores (K,), (K, K), (K,) in one dtype."""
    return torch.ops.ner_crf.viterbi(emissions.contiguous(), mask.sum(dim=1), start, transitions, end)


def forward_backward(
    emissions: Tensor, mask: Tensor, start: Tensor, transitions: Tensor, end: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """log_alpha (B, T, K), log_beta (B, T, K) (0 at padding) and log Z (B,), all float64 as the inputs."""
    return tuple(torch.ops.ner_crf.forward_backward(emissions.contiguous(), mask.sum(dim=1), start, transitions, end))
