"""The fused C++ recurrence of the plain LSTM cell (``lstm_kernel.cpp``, built by ``ner.nn.kernels``): its calls and
its autograd function.

The kernel runs a layer's whole step loop in C++, forward and the hand-written backward: a step's product is an
ATen matmul (or, for steps of few rows, part of its gate pass; or, at inference with ``bf16_products``, our
bfloat16 products of ``lstm_bf16.h``) and its gate arithmetic one pass over the rows, where the PyTorch path
(``ner.nn.recurrence``) dispatches a dozen ops per step from Python. It covers torch's LSTM cell with the options
cell clipping, projection and projection clipping, on CPU in float32 and float64, with the numbers of the PyTorch
path. That path remains for everything else (other cells, layer norm, other devices) and wherever the kernels
cannot be built (``ner.nn.kernels``).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ner.nn.kernels import available
from ner.nn.packing import Plan
from ner.nn.products import matmul_nt, weight_gradient
from ner.nn.recurrence import Spec
from ner.nn.recurrence_backward import input_gradients

# Inference reuses a layer's prepared weights while its parameters are unchanged (ner.nn.lstm): the forms of
# their recurrent weight that the kernel reads (its transpose for steps of few rows, its bfloat16 pairs) are kept
# for as long as it lives.
_derived: dict[tuple[int, str], tuple[weakref.ref, Tensor]] = {}  # (id(w_hh), form) -> (a weak reference, the form)
FUSED_MAX_ROWS = 8  # lstm_kernel.cpp's kFusedMaxRows: steps of at most this many rows read the transposed w_hh


def supports(spec: Spec, like: Tensor) -> bool:
    """Whether the kernel runs the cell ``spec`` on tensors like ``like``."""
    return (
        spec.variant == "lstm"
        and not spec.layer_norm
        and like.device.type == "cpu"
        and like.dtype in (torch.float32, torch.float64)
        and available()
    )


def native_bf16() -> bool:
    """Whether the kernel takes bfloat16 recurrent products natively (built for a CPU with AVX512-BF16)."""
    return available() and bool(torch.ops.ner_lstm.native_bf16())


def _bf16_applies(x: Tensor, columns: int) -> bool:
    """Whether products of ``x`` into ``columns`` outputs can be bfloat16 ones: float32 on CPU, no gradient
    wanted, columns a multiple of 16, native products."""
    cpu_float32 = x.dtype == torch.float32 and x.device.type == "cpu"
    return cpu_float32 and not torch.is_grad_enabled() and columns % 16 == 0 and native_bf16()


def bf16_input_projection(x: Tensor, w_ih: Tensor, bias: Tensor | None) -> Tensor | None:
    """x (V, I) w_ih (D, G, I)^T + bias (D, G) as (D, V, G), in bfloat16 products with float32 sums; None where
    those do not apply (``_bf16_applies``)."""
    if not _bf16_applies(x, w_ih.shape[1]):
        return None
    return torch.ops.ner_lstm.bf16_linear(x.contiguous(), _derived_form(w_ih, _bf16_pairs), bias)


def _transposed(w_hh: Tensor) -> Tensor:
    """w_hh (D, 4H, R) transposed and contiguous (D, R, 4H), as the fused steps read it."""
    return w_hh.transpose(1, 2).contiguous()


def _bf16_pairs(weight: Tensor) -> Tensor:
    """A weight (D, G, I) as bfloat16 pairs of inputs (D, ceil(I / 2), G, 2), as ``lstm_bf16.h`` reads it."""
    directions, gates, inputs = weight.shape
    pairs = (inputs + 1) // 2
    padded = torch.nn.functional.pad(weight, (0, 2 * pairs - inputs))  # (D, G, 2P)
    return padded.reshape(directions, gates, pairs, 2).transpose(1, 2).contiguous().to(torch.bfloat16)


def _derived_form(w_hh: Tensor, make: Callable[[Tensor], Tensor]) -> Tensor:
    """``make(w_hh)``, computed once and kept while w_hh lives."""
    key = (id(w_hh), make.__name__)
    entry = _derived.get(key)
    if entry is not None and entry[0]() is w_hh:
        return entry[1]
    form = make(w_hh)
    _derived[key] = (weakref.ref(w_hh, lambda _: _derived.pop(key, None)), form)
    return form


def kernel_steps(
    spec: Spec,
    plan: Plan,
    gx: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_hh: Tensor,
    w_hr: Tensor | None,
    bf16_products: bool = False,
) -> tuple[Tensor, Tensor]:
    """Inference over one layer: gx (D, N, 4H) the packed input projections (overwritten), h0 (D, B, R) and
    c0 (D, B, H) sorted. Returns the outputs (D, N, R) and the final cells (D, B, H) in sorted order.

    With ``bf16_products``, where the kernel has them natively (``native_bf16``), the recurrent products of
    steps of many rows take the previous state and w_hh rounded to bfloat16 and sum in float32 (float32
    inputs, no projection, H a multiple of 4; anything else stays float32)."""
    w_hh_t = _derived_form(w_hh, _transposed) if plan.batch_sizes[-1] <= FUSED_MAX_ROWS else None  # fused steps
    bf16 = bf16_products and w_hr is None and _bf16_applies(gx, w_hh.shape[1])
    pairs = _derived_form(w_hh, _bf16_pairs) if bf16 else None
    out, c_n = torch.ops.ner_lstm.forward(
        gx.contiguous(), h0, c0, w_hh, w_hh_t, w_hr, plan.batch_sizes, spec.cell_clip, spec.proj_clip, False, pairs
    )
    return out, c_n


class KernelRecurrence(torch.autograd.Function):
    """``ner.nn.recurrence_backward.Recurrence`` for the plain LSTM cell, its step loops in C++.

    Inputs: x (D, N, I), w_ih (D, 4H, I), bias (D, 4H) or None, h0 (D, B, R), c0 (D, B, H), w_hh (D, 4H, R),
    w_hr (D, R, H) or None, the candidate's rows doubled. Outputs: (D, N, R) and the final cells (D, B, H), sorted.
    """

    @staticmethod
    def forward(
        ctx,
        spec: Spec,
        plan: Plan,
        x: Tensor,
        w_ih: Tensor,
        bias: Tensor | None,
        h0: Tensor,
        c0: Tensor,
        w_hh: Tensor,
        w_hr: Tensor | None,
    ):
        gx = matmul_nt(x, w_ih, bias, packed_rows=True).contiguous()  # (D, N, 4H)
        out, c_n, act, c_raw, tanh_c, h_raw = torch.ops.ner_lstm.forward(
            gx, h0, c0, w_hh, None, w_hr, plan.batch_sizes, spec.cell_clip, spec.proj_clip, True
        )
        ctx.spec, ctx.plan, ctx.has_bias = spec, plan, bias is not None
        ctx.save_for_backward(x, w_ih, h0, c0, w_hh, w_hr, out, act, c_raw, tanh_c, h_raw)
        return out, c_n

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out: Tensor, d_c_n: Tensor):
        spec, plan = ctx.spec, ctx.plan
        x, w_ih, h0, c0, w_hh, w_hr, out, act, c_raw, tanh_c, h_raw = ctx.saved_tensors
        d_gx, d_h0, d_c0, h_prev, d_h_raw = torch.ops.ner_lstm.backward(
            d_out,
            d_c_n,
            h0,
            c0,
            out,
            act,
            c_raw,
            tanh_c,
            h_raw if h_raw.numel() else None,
            w_hh,
            w_hr,
            plan.batch_sizes,
            spec.cell_clip,
            spec.proj_clip,
        )
        d_w_hh = weight_gradient(d_gx, h_prev)  # (D, 4H, R)
        d_w_hr = None
        if w_hr is not None:
            m = act[:, :, 3 * spec.hidden_size :] * tanh_c  # (D, N, H) o * tanh(c), the projection's input
            d_w_hr = weight_gradient(d_h_raw, m)  # (D, R, H)
        d_x, d_w_ih, d_bias = input_gradients(d_gx, x, w_ih, ctx.needs_input_grad[2], ctx.has_bias)
        return None, None, d_x, d_w_ih, d_bias, d_h0, d_c0, d_w_hh, d_w_hr
