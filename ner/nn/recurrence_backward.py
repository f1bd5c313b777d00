"""The hand-written backward through time of one layer, and ``Recurrence``, the autograd function using it.

Each step's backward is a dozen ops; the weight gradients come at the end as one product over all steps.
Shape letters as in ``ner.nn.recurrence``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ner.nn.packing import Plan
from ner.nn.products import add_matmul_nt_, matmul_nt, weight_gradient
from ner.nn.recurrence import GRUStep, LSTMStep, Spec, StepWeights, candidate_scale, run_steps


def _lstm_step_backward(
    spec: Spec, w: StepWeights, s: LSTMStep, dh: Tensor, dc: Tensor, derivative_scale: Tensor
) -> tuple[Tensor, Tensor | None]:
    """Gradients of one LSTM step from dh (D, bs, R) and dc (D, bs, H) flowing into its outputs.

    Returns the gradient of the gate pre-activations (D, bs, K * H) and, with a projection, that of the
    unclipped projection output (D, bs, R); overwrites ``dc`` with the gradient of c_prev.
    ``derivative_scale`` (K, 1) is 2 for the candidate (g = 2 sigmoid - 1), 1 elsewhere.
    """
    d_h_raw, d_c_prev = None, dc
    if spec.proj_clip is not None:
        dh = dh * (s.h_raw.abs() <= spec.proj_clip)
    if w.hr is not None:
        d_h_raw, dh = dh, matmul_nt(dh, w.hr.transpose(1, 2))  # (D, bs, H)
    # Gradient of each gate's value (i, f, g, o; coupled: f, g, o), then times each sigmoid's derivative.
    act = s.act.unflatten(-1, (spec.gates, spec.hidden_size))  # (D, bs, K, H)
    d_pre = torch.addcmul(act, act, act, value=-1).mul_(derivative_scale)
    d_gate = torch.empty_like(d_pre)
    o_slot = spec.gates - 1
    torch.mul(dh, s.tanh_c, out=d_gate[:, :, o_slot])
    dc = torch.addcmul(dc, dh, s.dc_dh)
    if spec.variant == "peephole":
        dc.addcmul_(d_gate[:, :, 3] * d_pre[:, :, 3], w.peephole[:, None, 2])
    if spec.cell_clip is not None:
        dc = dc * (s.c_raw.abs() <= spec.cell_clip)
    if spec.variant == "coupled":
        torch.mul(dc, s.c_prev - s.g, out=d_gate[:, :, 0])  # i = 1 - f
        torch.mul(dc, s.i, out=d_gate[:, :, 1])
    else:
        torch.mul(dc, s.g, out=d_gate[:, :, 0])
        torch.mul(dc, s.c_prev, out=d_gate[:, :, 1])
        torch.mul(dc, s.i, out=d_gate[:, :, 2])
    d_pre.mul_(d_gate)
    torch.mul(dc, act[:, :, o_slot - 2], out=d_c_prev)  # f
    if spec.variant == "peephole":
        d_c_prev.addcmul_(d_pre[:, :, 0], w.peephole[:, None, 0]).addcmul_(d_pre[:, :, 1], w.peephole[:, None, 1])
    return d_pre.flatten(2), d_h_raw


def _gru_step_backward(s: GRUStep, dh: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of one GRU step from dh (D, bs, H).

    Returns the gradient of W_h h_prev + b_h (D, bs, 3H), that of the candidate's (doubled) pre-activation
    (D, bs, H) (the input part's n slot) and the direct gradient dh * z into h_prev.
    """
    d_gh = dh.new_empty(*dh.shape[:2], 3, dh.shape[-1])  # (D, bs, 3, H)
    dh_z = dh * s.z
    d_pre_n = torch.sub(dh, dh_z).mul_(0.5)  # d n * dn/d(2x) with n = tanh(x): halve, then
    d_pre_n.addcmul_(d_pre_n * s.n, s.n, value=-1)  # times 1 - n^2
    r_z = torch.stack([s.r, s.z], 2)  # (D, bs, 2, H)
    d_rz = torch.stack([d_pre_n * s.hn, dh * (s.h_prev - s.n)], 2)
    torch.mul(d_rz, torch.addcmul(r_z, r_z, r_z, value=-1), out=d_gh[:, :, :2])
    torch.mul(d_pre_n, s.r, out=d_gh[:, :, 2])
    return d_gh.flatten(2), d_pre_n, dh_z


class Recurrence(torch.autograd.Function):
    """One layer over a packed batch: input projection and recurrence, with a hand-written backward through time.

    Inputs: x (D, N, I) each direction's input in its step order, w_ih (D, K * H, I), bias (D, K * H) or None
    (b_ih, plus b_hh for LSTM), h0 (D, B, R), c0 (D, B, H) or None (GRU), then w_hh (D, K * H, R), GRU's b_hh
    (D, K * H), peephole (D, 3, H) and w_hr (D, R, H), each None when absent; the candidate's rows doubled
    (see ``StepWeights``). Outputs: (D, N, R) and the final cells (D, B, H) in sorted order (None for GRU).
    No layer norm (that runs under autograd).
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
        c0: Tensor | None,
        w_hh: Tensor,
        hh_bias: Tensor | None,
        peephole: Tensor | None,
        w_hr: Tensor | None,
    ):
        gx = matmul_nt(x, w_ih, bias, packed_rows=True)  # (D, N, K * H)
        w = StepWeights(w_hh, hh_bias, peephole, w_hr, None, None, None)
        out, c_n, ctx.steps = run_steps(spec, plan, w, gx, h0, c0, keep=True)
        ctx.spec, ctx.plan, ctx.weights, ctx.has_bias = spec, plan, w, bias is not None
        ctx.save_for_backward(x, w_ih)
        return out, c_n

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out: Tensor, d_c_n: Tensor | None):
        spec, plan, w, steps = ctx.spec, ctx.plan, ctx.weights, ctx.steps
        x, w_ih = ctx.saved_tensors
        gru = spec.variant == "gru"
        hh_t = w.hh.transpose(1, 2)  # (D, R, K * H)
        derivative_scale = candidate_scale(spec, d_out)
        d_h = d_out.clone()  # (D, N, R): gradient reaching each step's output, recurrent part added below
        d_h0 = d_out.new_zeros(d_out.shape[0], plan.batch_sizes[0], d_out.shape[-1])  # (D, B, R)
        d_c = None if gru else (torch.zeros_like(steps[0].c_prev) if d_c_n is None else d_c_n.clone())  # (D, B, H)
        d_gh, d_pre_n, d_h_raw = [], [], []
        for t in reversed(range(len(steps))):
            offset, size = plan.offsets[t], plan.batch_sizes[t]
            dh = d_h[:, offset : offset + size]
            target = d_h[:, plan.offsets[t - 1] : plan.offsets[t - 1] + size] if t else d_h0
            if gru:
                d_step, d_n, dh_z = _gru_step_backward(steps[t], dh)
                d_pre_n.append(d_n)
                target.add_(dh_z)
            else:
                d_step, d_hr = _lstm_step_backward(spec, w, steps[t], dh, d_c[:, :size], derivative_scale)
                d_h_raw.append(d_hr)
            add_matmul_nt_(target, d_step, hh_t)
            d_gh.append(d_step)

        d_gh = torch.cat(d_gh[::-1], 1)  # (D, N, K * H)
        h_prev = torch.cat([s.h_prev for s in steps], 1)  # (D, N, R)
        d_w_hh = weight_gradient(d_gh, h_prev)  # (D, K * H, R)
        d_gx, d_hh_bias, d_peephole, d_w_hr = d_gh, None, None, None
        if gru:
            d_gx = d_gh.clone()
            d_gx.unflatten(-1, (3, spec.hidden_size))[:, :, 2] = torch.cat(d_pre_n[::-1], 1)
            if w.hh_bias is not None:
                d_hh_bias = d_gh.sum(1)
        if spec.variant == "peephole":
            d_pre = d_gh.unflatten(-1, (4, spec.hidden_size))  # (D, N, 4, H)
            c_prev = torch.cat([s.c_prev for s in steps], 1)  # (D, N, H)
            c = torch.cat([s.c for s in steps], 1)
            d_peephole = torch.stack(
                [(d_pre[:, :, 0] * c_prev).sum(1), (d_pre[:, :, 1] * c_prev).sum(1), (d_pre[:, :, 3] * c).sum(1)], 1
            )  # (D, 3, H)
        if w.hr is not None:
            m = torch.cat([s.m for s in steps], 1)  # (D, N, H)
            d_w_hr = weight_gradient(torch.cat(d_h_raw[::-1], 1), m)  # (D, R, H)
        d_x, d_w_ih, d_bias = input_gradients(d_gx, x, w_ih, ctx.needs_input_grad[2], ctx.has_bias)
        return (None, None, d_x, d_w_ih, d_bias, d_h0, d_c, d_w_hh, d_hh_bias, d_peephole, d_w_hr)


def input_gradients(
    d_gx: Tensor, x: Tensor, w_ih: Tensor, needs_x: bool, has_bias: bool
) -> tuple[Tensor | None, Tensor, Tensor | None]:
    """Gradients of x (D, N, I), w_ih (D, K * H, I) and the bias (D, K * H) from that of the input projection
    gx = x @ w_ih^T + bias (D, N, K * H); None for x unless ``needs_x``, for the bias unless ``has_bias``."""
    d_x = matmul_nt(d_gx, w_ih.transpose(1, 2), packed_rows=True) if needs_x else None
    return d_x, weight_gradient(d_gx, x), d_gx.sum(1) if has_bias else None
