"""Matrix products of the recurrence: oneDNN's linear op on CPU float32 where it pays, ``torch.bmm`` elsewhere.

Every product is direction-stacked: a (D, M, K) left factor times the transpose of a (D, P, K) weight.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor


def _onednn_linear_works() -> bool:
    """Whether torch's oneDNN linear op (CPU, float32) runs here and agrees with a plain matmul."""
    try:
        a, b = torch.arange(12.0).view(3, 4).cos(), torch.arange(20.0).view(5, 4).sin()  # leaves the RNG alone
        result = torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")
        return torch.backends.mkldnn.is_available() and torch.allclose(result, a @ b.T, atol=1e-5)
    except (AttributeError, RuntimeError):
        return False


# On CPU float32 the matmuls go through oneDNN (the library torch's own LSTM uses on CPU): on our AMD EPYC, MKL's
# sgemm, which torch.bmm calls, ran at 40-60 % of oneDNN's speed. oneDNN has no batched call and costs ~20 us
# per call, so products with few rows (late steps of a long sentence, batch 1) stay with torch.bmm. It also
# builds a kernel for every new shape (~0.5 ms), so the input projections, over all packed rows whose count
# changes with every batch, get their rows padded to a multiple of _ROW_BUCKET (this made batch-1 inference
# 1.6x faster). The op has no autograd formula: it is used only where autograd is off (inside Recurrence,
# and at inference).
#
# Those kernels are kept in two caches, one entry per shape: oneDNN's primitive cache and ideep's computation cache
# in torch (1,024 entries each by default). Training's shapes (packed rows, active sentences per step, char CNN
# widths) keep changing, so at their default sizes the caches grew by ~500 MB over one epoch of CoNLL-2003
# (BENCHMARKS.md, "Memory"). Bounded as below (before the first oneDNN call: both read their size once) they
# hold ~20 MB, and epochs took no longer; a size set in the environment wins.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "128")
os.environ.setdefault("LRU_CACHE_CAPACITY", "1")
_ONEDNN = _onednn_linear_works()
_ONEDNN_MIN_ROWS = 16
_ROW_BUCKET = 64
# Fewer packed rows than this go to torch.bmm: padded to _ROW_BUCKET, oneDNN would compute up to 4.5x the rows of a
# batch-1 sentence (its input projection ran 2x faster with MKL's sgemm on this VM, which matches oneDNN beyond).
_ONEDNN_MIN_PACKED_ROWS = 256


def _onednn(a: Tensor) -> bool:
    """Whether a product with left factor ``a`` (D, M, K) goes to oneDNN (never under autograd)."""
    return (
        _ONEDNN
        and a.shape[1] >= _ONEDNN_MIN_ROWS
        and a.dtype == torch.float32
        and a.device.type == "cpu"
        and not torch.is_grad_enabled()
    )


def matmul_nt(
    a: Tensor, b: Tensor, bias: Tensor | None = None, add: Tensor | None = None, *, packed_rows: bool = False
) -> Tensor:
    """add + a @ b^T + bias for direction-stacked a (D, M, K), b (D, P, K), bias (D, P), add (D, M, P).

    ``packed_rows``: M is the packed row count (it varies from batch to batch, see the note above).
    """
    if _onednn(a) and not (packed_rows and a.shape[1] < _ONEDNN_MIN_PACKED_ROWS):
        rows = a.shape[1]
        if packed_rows and rows % _ROW_BUCKET:
            a = F.pad(a, (0, 0, 0, _ROW_BUCKET - rows % _ROW_BUCKET))
        parts = [
            torch.ops.mkldnn._linear_pointwise(a_d, b_d, None if bias is None else bias[d], "none", [], "")
            for d, (a_d, b_d) in enumerate(zip(a, b))
        ]
        parts = [part[:rows] for part in parts]
        product = parts[0][None] if len(parts) == 1 else torch.stack(parts)  # (D, M, P), contiguous
        return product if add is None else product.add_(add)
    if bias is not None:
        add = bias[:, None] if add is None else add + bias[:, None]
    return torch.bmm(a, b.transpose(1, 2)) if add is None else torch.baddbmm(add, a, b.transpose(1, 2))


def weight_gradient(d_out: Tensor, inputs: Tensor) -> Tensor:
    """d_out^T @ inputs, summed over the packed rows: (D, N, P), (D, N, K) -> (D, P, K)."""
    return matmul_nt(d_out.transpose(1, 2), inputs.transpose(1, 2))


def add_matmul_nt_(target: Tensor, a: Tensor, b: Tensor) -> None:
    """target += a @ b^T in place, for direction-stacked target (D, M, P), a (D, M, K) and b (D, P, K)."""
    if _onednn(a):
        for target_d, a_d, b_d in zip(target, a, b):
            target_d.add_(torch.ops.mkldnn._linear_pointwise(a_d, b_d, None, "none", [], ""))
    else:
        target.baddbmm_(a, b.transpose(1, 2))
