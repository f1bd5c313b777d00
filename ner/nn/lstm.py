"""Our LSTM and GRU layers: torch's parameters and numbers, plus LSTM variants, masks and a fast recurrence.

``LSTM`` and ``GRU`` are drop-in for torch's LSTM and GRU modules (same parameter names and shapes,
``(output, (h_n, c_n))`` / ``(output, h_n)``) but take a ``(batch, time)`` bool mask (or lengths): the backward
direction reads each sentence reversed within its own length, outputs are exactly zero at padding and final
states are taken at each sentence's last token.

Cells (gate order as torch): ``lstm`` (i, f, g, o), ``peephole`` (Gers & Schmidhuber 2000: i and f see
c_{t-1}, o sees c_t through diagonal weights), ``coupled`` (gates f, g, o with i = 1 - f), ``gru`` (r, z, n;
Cho et al. 2014 as torch writes it). Options: layer normalisation of each gate's pre-activation, cell clipping,
a projection of the hidden state with clipping (LSTMP, as ELMo uses), a forget-gate bias added at init,
dropout and residual connections between layers.

How it runs. Sentences are sorted longest first and packed time-major: packed row n is (step t, sentence b),
the rows of step t are contiguous and hold the first ``batch_sizes[t]`` sentences, so finished sentences drop
out of the batch and padding is never computed. Direction 1 reads sentence b at step t from position
``length_b - 1 - t``. Per layer the input projection of every step is one matmul per direction; each step
advances both directions together (one ``baddbmm`` on direction-stacked weights, or one oneDNN product per
direction on CPU float32, see ``_matmul_nt``) plus about ten elementwise ops, with tanh taken as a sigmoid.
Training runs a hand-written backward through time (``_Recurrence``): a dozen ops per step, and the weight
gradients as one matmul over all steps. Inference saves nothing for backward. Layer normalisation runs the
same step code under autograd instead. No host syncs inside the loops: the lengths are read once per call.

Shape letters: B batch, T time, D directions (1 or 2), N packed rows (the sum of the lengths), H hidden size,
R recurrent size (``proj_size`` or H), K gates (4, or 3 for ``coupled`` and ``gru``), I layer input size.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

VARIANTS = ("lstm", "peephole", "coupled", "gru")
_GATES = {"lstm": 4, "peephole": 4, "coupled": 3, "gru": 3}
_FORGET_GATE = {"lstm": 1, "peephole": 1, "coupled": 0}
_CANDIDATE = {"lstm": 2, "peephole": 2, "coupled": 1, "gru": 2}  # gate index of g (GRU: n)


def reverse_padded(x: Tensor, lengths: Tensor | Sequence[int]) -> Tensor:
    """Reverse each sequence of ``x`` (batch, time, ...) within its own length; padding stays where it is.

    ``lengths`` (batch,) may be a tensor on any device or a list. Applying it twice gives ``x`` back.
    """
    lengths = torch.as_tensor(lengths, device=x.device)[:, None]  # (B, 1)
    steps = torch.arange(x.shape[1], device=x.device)  # (T,)
    index = torch.where(steps < lengths, lengths - 1 - steps, steps)  # (B, T)
    index = index.view(*index.shape, *(1,) * (x.dim() - 2)).expand_as(x)
    return x.gather(1, index)


@dataclass(frozen=True)
class _Spec:
    """What a cell computes; shared by every layer of a module."""

    variant: str
    hidden_size: int
    proj_size: int
    cell_clip: float | None
    proj_clip: float | None
    layer_norm: bool

    @property
    def gates(self) -> int:
        return _GATES[self.variant]


@dataclass(frozen=True)
class _Plan:
    """The packed, length-sorted layout of one batch (see the module docstring), shared by every layer."""

    batch_sizes: list[int]  # active sentences at each step, non-increasing
    offsets: list[int]  # first packed row of each step
    positions: Tensor  # (D, N) row b * T + t of the caller's (B, T) grid that packed row n reads, per direction
    cross: Tensor | None  # (D, N, D) row of the (D * N) outputs feeding the next layer's direction d', part d
    last: Tensor  # (B,) packed row of each sentence's last step, in the caller's order
    order: Tensor  # (B,) caller's index of each sorted sentence, longest first
    unorder: Tensor  # (B,) sorted index of each caller's sentence


@functools.lru_cache(maxsize=256)
def _make_plan(lengths: tuple[int, ...], time: int, directions: int, device: torch.device) -> _Plan:
    """The packed layout for ``lengths`` (all in 1..time); cached, its index tensors are never modified."""
    batch = len(lengths)
    lengths = torch.tensor(lengths)
    sorted_lengths, order = lengths.sort(descending=True, stable=True)  # (B,), (B,)
    steps = torch.arange(int(sorted_lengths[0]))
    active = steps[:, None] < sorted_lengths[None, :]  # (T_run, B)
    step_of, sentence_of = active.nonzero(as_tuple=True)  # (N,), (N,) time-major
    packed = len(step_of)
    row = torch.zeros(active.shape, dtype=torch.long)
    row[active] = torch.arange(packed)  # row[t, b]: packed row of step t of sorted sentence b
    mirrored = sorted_lengths[sentence_of] - 1 - step_of  # (N,) step read by direction 1
    start = order[sentence_of] * time
    positions = torch.stack([start + step_of, start + mirrored])[:directions]  # (D, N)
    cross = None
    if directions == 2:
        same, reverse = torch.arange(packed), row[mirrored, sentence_of]
        cross = torch.stack([torch.stack([same, packed + reverse], -1), torch.stack([reverse, packed + same], -1)])
    unorder = torch.empty_like(order)
    unorder[order] = torch.arange(batch)
    last = row[sorted_lengths - 1, torch.arange(batch)][unorder]  # (B,)
    batch_sizes = active.sum(1).tolist()
    offsets = [0, *torch.tensor(batch_sizes).cumsum(0)[:-1].tolist()]

    def put(index: Tensor) -> Tensor:
        return index.to(device, non_blocking=True)

    return _Plan(batch_sizes, offsets, put(positions), None if cross is None else put(cross), put(last),
                 put(order), put(unorder))


def _rows(source: Tensor, index: Tensor) -> Tensor:
    """source[index] for a 2-D source and an index of any shape: (*index.shape, source.shape[1])."""
    return source.index_select(0, index.flatten()).view(*index.shape, source.shape[1])


class _StepWeights(NamedTuple):
    """Direction-stacked weights the recurrence reads at every step.

    Outside layer norm the candidate's rows (g, or GRU's n) of every weight and bias come doubled, so one
    sigmoid s of the doubled pre-activation gives tanh as 2 s - 1 (ATen's CPU tanh is ~10x slower than its
    sigmoid). With layer norm, ``gate_scale`` doubles the candidate after the normalisation instead.
    """

    hh: Tensor  # (D, K * H, R) recurrent weight
    hh_bias: Tensor | None  # (D, K * H) GRU only: b_hh, which r multiplies in the candidate
    peephole: Tensor | None  # (D, 3, H) diagonal weights c -> i, f, o
    hr: Tensor | None  # (D, R, H) projection
    norm_weight: Tensor | None  # (D, 1, K, H) layer-norm gain per gate
    norm_bias: Tensor | None  # (D, 1, K, H) layer-norm shift per gate
    gate_scale: Tensor | None  # (K, 1) with layer norm: 2 for the candidate, 1 for the other gates


class _LSTMStep(NamedTuple):
    """What one LSTM step keeps for its backward; every tensor is (D, bs, H) unless marked."""

    h_prev: Tensor  # (D, bs, R)
    c_prev: Tensor
    act: Tensor  # (D, bs, K * H) sigmoid of every gate's pre-activation (the candidate's doubled)
    i: Tensor
    g: Tensor
    c_raw: Tensor  # before clipping
    c: Tensor
    tanh_c: Tensor
    dc_dh: Tensor  # o * (1 - tanh(c)^2) = d m / d c: turns the gradient of m into one of c
    m: Tensor  # o * tanh(c), before the projection
    h_raw: Tensor  # (D, bs, R) before clipping


class _GRUStep(NamedTuple):
    """What one GRU step keeps for its backward; every tensor is (D, bs, H)."""

    h_prev: Tensor
    r: Tensor
    z: Tensor
    n: Tensor
    hn: Tensor  # W_hn h_prev + b_hn (doubled)


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
# 1.6x faster). The op has no autograd formula: it is used only where autograd is off (inside _Recurrence,
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


def _onednn(a: Tensor) -> bool:
    """Whether a product with left factor ``a`` (D, M, K) goes to oneDNN (never under autograd)."""
    return (_ONEDNN and a.shape[1] >= _ONEDNN_MIN_ROWS and a.dtype == torch.float32 and a.device.type == "cpu"
            and not torch.is_grad_enabled())


def _matmul_nt(a: Tensor, b: Tensor, bias: Tensor | None = None, add: Tensor | None = None, *,
               packed_rows: bool = False) -> Tensor:
    """add + a @ b^T + bias for direction-stacked a (D, M, K), b (D, P, K), bias (D, P), add (D, M, P).

    ``packed_rows``: M is the packed row count (it varies from batch to batch, see the note above).
    """
    if _onednn(a):
        rows = a.shape[1]
        if packed_rows and rows % _ROW_BUCKET:
            a = F.pad(a, (0, 0, 0, _ROW_BUCKET - rows % _ROW_BUCKET))
        parts = [torch.ops.mkldnn._linear_pointwise(a_d, b_d, None if bias is None else bias[d], "none", [], "")
                 for d, (a_d, b_d) in enumerate(zip(a, b))]
        product = (parts[0][None] if len(parts) == 1 else torch.stack(parts))[:, :rows]  # (D, M, P)
        return product if add is None else product.add_(add)
    if bias is not None:
        add = bias[:, None] if add is None else add + bias[:, None]
    return torch.bmm(a, b.transpose(1, 2)) if add is None else torch.baddbmm(add, a, b.transpose(1, 2))


def _weight_gradient(d_out: Tensor, inputs: Tensor) -> Tensor:
    """d_out^T @ inputs, summed over the packed rows: (D, N, P), (D, N, K) -> (D, P, K)."""
    return _matmul_nt(d_out.transpose(1, 2), inputs.transpose(1, 2))


def _add_matmul_nt_(target: Tensor, a: Tensor, b: Tensor) -> None:
    """target += a @ b^T in place, for direction-stacked target (D, M, P), a (D, M, K) and b (D, P, K)."""
    if _onednn(a):
        for target_d, a_d, b_d in zip(target, a, b):
            target_d.add_(torch.ops.mkldnn._linear_pointwise(a_d, b_d, None, "none", [], ""))
    else:
        target.baddbmm_(a, b.transpose(1, 2))


def _candidate_scale(spec: _Spec, like: Tensor) -> Tensor:
    """(K, 1) factors on the gates: 2 on the candidate (g, or GRU's n), 1 elsewhere."""
    scale = [1.0] * spec.gates
    scale[_CANDIDATE[spec.variant]] = 2.0
    return like.new_tensor(scale)[:, None]


@functools.cache
def _constant(value: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A cached 0-dim tensor (tensor arithmetic skips the per-call conversion of a Python number)."""
    return torch.tensor(value, dtype=dtype, device=device)


# Below this many elements torch.tanh beats the three ops of the sigmoid route (its cost is per element).
_SMALL = 2048


def _tanh_from_sigmoid(s: Tensor) -> Tensor:
    """2 s - 1, which is tanh(x) when s = sigmoid(2x)."""
    return torch.addcmul(_constant(-1.0, s.dtype, s.device), s, _constant(2.0, s.dtype, s.device))


def _gate_norm(pre: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """Layer-normalise each gate's pre-activation (..., K, H) over H, then scale and shift."""
    return F.layer_norm(pre, pre.shape[-1:]) * weight + bias


def _lstm_step(spec: _Spec, w: _StepWeights, gx: Tensor, h_prev: Tensor, c_prev: Tensor,
               keep: bool) -> tuple[Tensor, Tensor, _LSTMStep | None]:
    """Advance every direction one step: gx (D, bs, K * H) input part, returns h (D, bs, R) and c (D, bs, H).

    The candidate's pre-activation arrives doubled (see ``_StepWeights``), so g = 2 sigmoid - 1 = tanh.
    Saves what ``_lstm_step_backward`` needs when ``keep``.
    """
    pre = _matmul_nt(h_prev, w.hh, add=gx)  # (D, bs, K * H)
    if w.norm_weight is not None:
        pre = (_gate_norm(pre.unflatten(-1, (spec.gates, spec.hidden_size)), w.norm_weight, w.norm_bias)
               * w.gate_scale).flatten(2)
    if spec.variant == "peephole":
        pre_i, pre_f, pre_g, pre_o = pre.chunk(4, -1)
        i = torch.sigmoid(torch.addcmul(pre_i, w.peephole[:, None, 0], c_prev))
        f = torch.sigmoid(torch.addcmul(pre_f, w.peephole[:, None, 1], c_prev))
        s_g = torch.sigmoid(pre_g)
    else:
        act = torch.sigmoid(pre)  # (D, bs, K * H)
        if spec.variant == "coupled":
            f, s_g, o = act.chunk(3, -1)
            i = 1 - f
        else:
            i, f, s_g, o = act.chunk(4, -1)
    g = _tanh_from_sigmoid(s_g)
    c_raw = torch.addcmul(f * c_prev, i, g)
    c = c_raw if spec.cell_clip is None else c_raw.clamp(-spec.cell_clip, spec.cell_clip)
    if spec.variant == "peephole":
        o = torch.sigmoid(torch.addcmul(pre_o, w.peephole[:, None, 2], c))
        act = torch.cat([i, f, s_g, o], -1) if keep else None
    tanh_c = torch.tanh(c) if c.numel() <= _SMALL else _tanh_from_sigmoid(torch.sigmoid(c + c))
    m = o * tanh_c
    h_raw = m if w.hr is None else _matmul_nt(m, w.hr)  # (D, bs, R)
    h = h_raw if spec.proj_clip is None else h_raw.clamp(-spec.proj_clip, spec.proj_clip)
    if not keep:
        return h, c, None
    dc_dh = torch.addcmul(o, m, tanh_c, value=-1)
    return h, c, _LSTMStep(h_prev, c_prev, act, i, g, c_raw, c, tanh_c, dc_dh, m, h_raw)


def _gru_step(spec: _Spec, w: _StepWeights, gx: Tensor, h_prev: Tensor) -> tuple[Tensor, _GRUStep]:
    """Advance every direction one GRU step: gx (D, bs, 3H) is W_i x + b_i, returns h (D, bs, H)."""
    hidden = spec.hidden_size
    gh = _matmul_nt(h_prev, w.hh, w.hh_bias)  # (D, bs, 3H)
    gx, gh = gx.unflatten(-1, (3, hidden)), gh.unflatten(-1, (3, hidden))  # (D, bs, 3, H)
    pre_rz = gx[:, :, :2] + gh[:, :, :2]
    if w.norm_weight is not None:
        pre_rz = _gate_norm(pre_rz, w.norm_weight[:, :, :2], w.norm_bias[:, :, :2])
    r, z = torch.sigmoid(pre_rz).unbind(2)
    hn = gh[:, :, 2]
    pre_n = torch.addcmul(gx[:, :, 2], r, hn)
    if w.norm_weight is not None:
        pre_n = _gate_norm(pre_n, w.norm_weight[:, :, 2], w.norm_bias[:, :, 2]) * w.gate_scale[2]
    n = _tanh_from_sigmoid(torch.sigmoid(pre_n))
    h = torch.addcmul(n, z, h_prev - n)  # (1 - z) * n + z * h_prev
    return h, _GRUStep(h_prev, r, z, n, hn)


def _run_steps(spec: _Spec, plan: _Plan, w: _StepWeights, gx: Tensor, h0: Tensor, c0: Tensor | None,
               keep: bool) -> tuple[Tensor, Tensor | None, list]:
    """Run the recurrence of one layer over packed input projections gx (D, N, K * H).

    Returns the outputs (D, N, R), the final cells (D, B, H) in sorted order (None for GRU) and, when ``keep``,
    each step's saved tensors. Plain differentiable ops: autograd can run through it (layer norm does).
    """
    outputs, final_cells, steps = [], [], []
    h, c = h0, c0  # (D, B, R), (D, B, H)
    for t, (offset, size) in enumerate(zip(plan.offsets, plan.batch_sizes)):
        gx_t = gx[:, offset:offset + size]  # (D, bs, K * H)
        if c is None:
            h, saved = _gru_step(spec, w, gx_t, h if h.shape[1] == size else h[:, :size])
        else:
            if c.shape[1] != size:
                h, c = h[:, :size], c[:, :size]
            h, c, saved = _lstm_step(spec, w, gx_t, h, c, keep)
            next_size = plan.batch_sizes[t + 1] if t + 1 < len(plan.batch_sizes) else 0
            if next_size < size:
                final_cells.append(c[:, next_size:])  # sentences whose last step this is
        outputs.append(h)
        if keep:
            steps.append(saved)
    c_n = None if c0 is None else torch.cat(final_cells[::-1], 1)
    return torch.cat(outputs, 1), c_n, steps


def _lstm_step_backward(spec: _Spec, w: _StepWeights, s: _LSTMStep, dh: Tensor, dc: Tensor,
                        derivative_scale: Tensor) -> tuple[Tensor, Tensor | None]:
    """Gradients of one LSTM step from dh (D, bs, R) and dc (D, bs, H) flowing into its outputs.

    Returns the gradient of the gate pre-activations (D, bs, K * H) and, with a projection, that of the
    unclipped projection output (D, bs, R); overwrites ``dc`` with the gradient of c_prev.
    ``derivative_scale`` (K, 1) is 2 for the candidate (g = 2 sigmoid - 1), 1 elsewhere.
    """
    d_h_raw, d_c_prev = None, dc
    if spec.proj_clip is not None:
        dh = dh * (s.h_raw.abs() <= spec.proj_clip)
    if w.hr is not None:
        d_h_raw, dh = dh, _matmul_nt(dh, w.hr.transpose(1, 2))  # (D, bs, H)
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


def _gru_step_backward(s: _GRUStep, dh: Tensor) -> tuple[Tensor, Tensor, Tensor]:
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


class _Recurrence(torch.autograd.Function):
    """One layer over a packed batch: input projection and recurrence, with a hand-written backward through time.

    Inputs: x (D, N, I) each direction's input in its step order, w_ih (D, K * H, I), bias (D, K * H) or None
    (b_ih, plus b_hh for LSTM), h0 (D, B, R), c0 (D, B, H) or None (GRU), then w_hh (D, K * H, R), GRU's b_hh
    (D, K * H), peephole (D, 3, H) and w_hr (D, R, H), each None when absent; the candidate's rows doubled
    (see ``_StepWeights``). Outputs: (D, N, R) and the final cells (D, B, H) in sorted order (None for GRU).
    No layer norm (that runs under autograd).
    """

    @staticmethod
    def forward(ctx, spec: _Spec, plan: _Plan, x: Tensor, w_ih: Tensor, bias: Tensor | None, h0: Tensor,
                c0: Tensor | None, w_hh: Tensor, hh_bias: Tensor | None, peephole: Tensor | None,
                w_hr: Tensor | None):
        gx = _matmul_nt(x, w_ih, bias, packed_rows=True)  # (D, N, K * H)
        w = _StepWeights(w_hh, hh_bias, peephole, w_hr, None, None, None)
        out, c_n, ctx.steps = _run_steps(spec, plan, w, gx, h0, c0, keep=True)
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
        derivative_scale = _candidate_scale(spec, d_out)
        d_h = d_out.clone()  # (D, N, R): gradient reaching each step's output, recurrent part added below
        d_h0 = d_out.new_zeros(d_out.shape[0], plan.batch_sizes[0], d_out.shape[-1])  # (D, B, R)
        d_c = None if gru else (torch.zeros_like(steps[0].c_prev) if d_c_n is None else d_c_n.clone())  # (D, B, H)
        d_gh, d_pre_n, d_h_raw = [], [], []
        for t in reversed(range(len(steps))):
            offset, size = plan.offsets[t], plan.batch_sizes[t]
            dh = d_h[:, offset:offset + size]
            target = d_h[:, plan.offsets[t - 1]:plan.offsets[t - 1] + size] if t else d_h0
            if gru:
                d_step, d_n, dh_z = _gru_step_backward(steps[t], dh)
                d_pre_n.append(d_n)
                target.add_(dh_z)
            else:
                d_step, d_hr = _lstm_step_backward(spec, w, steps[t], dh, d_c[:, :size], derivative_scale)
                d_h_raw.append(d_hr)
            _add_matmul_nt_(target, d_step, hh_t)
            d_gh.append(d_step)

        d_gh = torch.cat(d_gh[::-1], 1)  # (D, N, K * H)
        h_prev = torch.cat([s.h_prev for s in steps], 1)  # (D, N, R)
        d_w_hh = _weight_gradient(d_gh, h_prev)  # (D, K * H, R)
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
            d_peephole = torch.stack([(d_pre[:, :, 0] * c_prev).sum(1), (d_pre[:, :, 1] * c_prev).sum(1),
                                      (d_pre[:, :, 3] * c).sum(1)], 1)  # (D, 3, H)
        if w.hr is not None:
            m = torch.cat([s.m for s in steps], 1)  # (D, N, H)
            d_w_hr = _weight_gradient(torch.cat(d_h_raw[::-1], 1), m)  # (D, R, H)
        d_x = _matmul_nt(d_gx, w_ih.transpose(1, 2), packed_rows=True) if ctx.needs_input_grad[2] else None
        d_w_ih = _weight_gradient(d_gx, x)  # (D, K * H, I)
        d_bias = d_gx.sum(1) if ctx.has_bias else None
        return (None, None, d_x, d_w_ih, d_bias, d_h0, d_c, d_w_hh, d_hh_bias, d_peephole, d_w_hr)


class _LayerWeights(NamedTuple):
    """One layer's parameters, direction-stacked and ready for ``_Recurrence`` / ``_run_steps``."""

    w_ih: Tensor  # (D, K * H, I)
    bias: Tensor | None  # (D, K * H): b_ih (+ b_hh for LSTM)
    w_hh: Tensor  # (D, K * H, R)
    hh_bias: Tensor | None  # (D, K * H) GRU's b_hh
    peephole: Tensor | None  # (D, 3, H)
    w_hr: Tensor | None  # (D, R, H)
    norm_weight: Tensor | None  # (D, 1, K, H)
    norm_bias: Tensor | None  # (D, 1, K, H)


# Inference keeps a layer's prepared (stacked, scaled) weights while its parameters are unchanged, if it has at
# most this many parameters (the tagger's BiLSTM, not ELMo's 4096-wide cells, whose copy would be large).
_CACHED_WEIGHTS_MAX = 1 << 22


class _RNNBase(nn.Module):
    """Shared body of ``LSTM`` and ``GRU``: parameters in torch's layout, masks, layers and directions."""

    def __init__(self, variant: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = True, dropout: float = 0.0, bidirectional: bool = False, *,
                 proj_size: int = 0, cell_clip: float | None = None, proj_clip: float | None = None,
                 layer_norm: bool = False, residual: bool = False, forget_bias: float = 0.0) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant: expected one of {', '.join(VARIANTS)}, got {variant!r}")
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if value < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1], got {dropout!r}")
        if not 0 <= proj_size < hidden_size:
            raise ValueError(f"proj_size: expected 0 (none) or an integer below hidden_size {hidden_size}, "
                             f"got {proj_size!r}")
        if proj_clip is not None and not proj_size:
            raise ValueError("proj_clip: needs proj_size > 0")
        for name, value in (("cell_clip", cell_clip), ("proj_clip", proj_clip)):
            if value is not None and value <= 0:
                raise ValueError(f"{name}: expected a positive bound or None, got {value!r}")
        if variant == "gru" and (proj_size or cell_clip is not None or forget_bias):
            raise ValueError("gru: proj_size, cell_clip and forget_bias apply to LSTM cells only")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size, self.residual = bidirectional, proj_size, residual
        self.variant, self.cell_clip, self.proj_clip = variant, cell_clip, proj_clip
        self.layer_norm, self.forget_bias = layer_norm, forget_bias
        self.spec = _Spec(variant, hidden_size, proj_size, cell_clip, proj_clip, layer_norm)
        self._inference_weights: dict[int, tuple[tuple, _LayerWeights]] = {}  # see _layer_weights
        gate_size = self.spec.gates * hidden_size
        recurrent = proj_size or hidden_size
        self._layer_parameters: list[list[str]] = []  # names of each layer's parameters
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else recurrent * self.directions
            self._layer_parameters.append([])
            for suffix in self._suffixes:
                shapes = {"weight_ih": (gate_size, layer_input), "weight_hh": (gate_size, recurrent)}
                if bias:
                    shapes |= {"bias_ih": (gate_size,), "bias_hh": (gate_size,)}
                if proj_size:
                    shapes["weight_hr"] = (proj_size, hidden_size)
                if variant == "peephole":
                    shapes["weight_peephole"] = (3 * hidden_size,)  # c -> i, f, o
                if layer_norm:
                    shapes |= {"norm_weight": (gate_size,), "norm_bias": (gate_size,)}
                for kind, shape in shapes.items():
                    self.register_parameter(f"{kind}_l{layer}{suffix}", nn.Parameter(torch.empty(shape)))
                    self._layer_parameters[layer].append(f"{kind}_l{layer}{suffix}")
        self.reset_parameters()

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def _suffixes(self) -> tuple[str, ...]:
        return ("", "_reverse")[:self.directions]

    def reset_parameters(self) -> None:
        """torch's init (uniform in +-1/sqrt(hidden_size)); layer norm starts as identity; forget bias added."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        hidden = self.hidden_size
        with torch.no_grad():
            for name, parameter in self.named_parameters():
                if name.startswith("norm_"):
                    parameter.fill_(1.0 if name.startswith("norm_weight") else 0.0)
                else:
                    parameter.uniform_(-bound, bound)
                if name.startswith("bias_ih") and self.forget_bias:
                    forget = _FORGET_GATE[self.spec.variant]
                    parameter[forget * hidden:(forget + 1) * hidden] += self.forget_bias

    def extra_repr(self) -> str:
        options = [f"{self.input_size}, {self.hidden_size}", f"num_layers={self.num_layers}",
                   f"bidirectional={self.bidirectional}"]
        spec = self.spec
        for name, value, default in (("variant", spec.variant, "lstm"), ("proj_size", self.proj_size, 0),
                                     ("cell_clip", spec.cell_clip, None), ("proj_clip", spec.proj_clip, None),
                                     ("layer_norm", spec.layer_norm, False), ("residual", self.residual, False),
                                     ("dropout", self.dropout, 0.0), ("bias", self.bias, True),
                                     ("batch_first", self.batch_first, True)):
            if value != default and not (name == "variant" and isinstance(self, GRU)):
                options.append(f"{name}={value!r}")
        return ", ".join(options)

    def _layer_weights(self, layer: int) -> _LayerWeights:
        """Layer ``layer``'s parameters stacked over directions, in the form the recurrence reads.

        Without layer norm the candidate's rows come doubled (see ``_StepWeights``). At inference the result
        is cached until a parameter changes (in place or replaced), unless the layer is large.
        """
        parameters = [getattr(self, name) for name in self._layer_parameters[layer]]
        key = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in parameters)
        cached = self._inference_weights.get(layer)
        if not torch.is_grad_enabled() and cached is not None and cached[0] == key:
            return cached[1]
        spec = self.spec
        w_ih, w_hh, w_hr, b_ih, b_hh, peephole, norm_weight, norm_bias = (self._stacked(kind, layer) for kind in (
            "weight_ih", "weight_hh", "weight_hr", "bias_ih", "bias_hh", "weight_peephole", "norm_weight",
            "norm_bias"))
        gru = spec.variant == "gru"
        bias = b_ih if gru or b_ih is None else b_ih + b_hh  # (D, K * H)
        hh_bias = b_hh if gru else None
        if not spec.layer_norm:  # double the candidate's rows (see _StepWeights)
            row_scale = _candidate_scale(spec, w_ih).expand(-1, self.hidden_size).flatten()  # (K * H,)
            w_ih, w_hh = w_ih * row_scale[:, None], w_hh * row_scale[:, None]
            bias, hh_bias = (None if b is None else b * row_scale for b in (bias, hh_bias))
        norm = [None if p is None else p.unflatten(-1, (spec.gates, self.hidden_size))[:, None]
                for p in (norm_weight, norm_bias)]  # (D, 1, K, H)
        peephole = None if peephole is None else peephole.unflatten(-1, (3, self.hidden_size))  # (D, 3, H)
        weights = _LayerWeights(w_ih, bias, w_hh, hh_bias, peephole, w_hr, *norm)
        if not torch.is_grad_enabled() and sum(p.numel() for p in parameters) <= _CACHED_WEIGHTS_MAX:
            self._inference_weights[layer] = (key, weights)
        return weights

    def _stacked(self, kind: str, layer: int) -> Tensor | None:
        """The parameter ``{kind}_l{layer}`` of every direction, stacked (D, ...), or None if absent."""
        names = [f"{kind}_l{layer}{suffix}" for suffix in self._suffixes]
        if not hasattr(self, names[0]):
            return None
        parts = [getattr(self, name) for name in names]
        return parts[0][None] if len(parts) == 1 else torch.stack(parts)

    def _lengths(self, mask: Tensor | None, lengths: Tensor | Sequence[int] | None, batch: int,
                 time: int) -> tuple[int, ...]:
        """Sequence lengths from a left-aligned mask, explicit lengths, or full length."""
        if mask is not None and lengths is not None:
            raise ValueError("pass mask or lengths, not both")
        if mask is not None:
            if mask.dtype != torch.bool or mask.shape != (batch, time):
                raise ValueError(f"mask: expected a bool tensor of shape {(batch, time)} (batch, time), got "
                                 f"{mask.dtype} {tuple(mask.shape)}")
            counts = mask.sum(1)
            if not torch.equal(mask, torch.arange(time, device=mask.device) < counts[:, None]):
                raise ValueError("mask: expected left-aligned padding (each row True then False), got a row "
                                 "with False before True")
            lengths = counts
        elif lengths is None:
            return (time,) * batch
        values = tuple(int(n) for n in (lengths.tolist() if isinstance(lengths, Tensor) else lengths))
        if len(values) != batch or not all(1 <= n <= time for n in values):
            raise ValueError(f"lengths: expected {batch} values in 1..{time} (mask rows need a True first "
                             f"step), got {list(values)}")
        return values

    def _initial_state(self, state: Tensor | tuple[Tensor, Tensor] | None,
                       x: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """Check ``state`` against torch's shapes: h (L * D, B, R) and, for LSTM, c (L * D, B, H)."""
        gru = self.spec.variant == "gru"
        if state is None:
            return None, None
        h0, c0 = (state, None) if gru else state
        batch, stacked = x.shape[0], self.num_layers * self.directions
        expected = [("h0", h0, (stacked, batch, self.proj_size or self.hidden_size))]
        if not gru:
            expected.append(("c0", c0, (stacked, batch, self.hidden_size)))
        for name, tensor, shape in expected:
            if tuple(tensor.shape) != shape:
                raise ValueError(f"state {name}: expected shape {shape} (layers * directions, batch, size), "
                                 f"got {tuple(tensor.shape)}")
        return h0, c0

    def input_projection(self, x: Tensor) -> Tensor:
        """The first layer's input part of every gate, ``W_ih x + b`` per direction, for V inputs: x (V,
        input_size) -> (D, V, K * H), the ``inputs_table`` of ``forward`` (internal form: without layer norm
        the candidate's part comes doubled, see ``_StepWeights``).

        Each input's row depends on that input alone, so a caller can compute it once per distinct input and
        reuse it: the tagger does, per token spelling, at inference.
        """
        if x.dim() != 2 or x.shape[-1] != self.input_size:
            raise ValueError(f"x: expected shape (rows, {self.input_size}), got {tuple(x.shape)}")
        weights = self._layer_weights(0)
        return _matmul_nt(x.expand(self.directions, -1, -1), weights.w_ih, weights.bias, packed_rows=True)

    def forward(self, x: Tensor, mask: Tensor | None = None, state: Tensor | tuple[Tensor, Tensor] | None = None,
                *, lengths: Tensor | Sequence[int] | None = None,
                inputs_table: Tensor | None = None) -> tuple[Tensor, Tensor | tuple[Tensor, Tensor]]:
        """Run every layer over ``x`` (B, T, input_size) (or (T, B, input_size) without batch_first). With
        ``inputs_table`` (D, V, K * H) from ``input_projection``, x is instead (B, T) long: each token's row
        in the table, from which the first layer reads its gate inputs.

        ``mask`` (B, T) bool marks real tokens, left-aligned (or give ``lengths`` (B,) instead; neither means
        full length). ``state`` is torch's initial state: ``(h0, c0)`` for LSTM, ``h0`` for GRU, with h0
        (layers * directions, B, proj_size or hidden_size) and c0 (layers * directions, B, hidden_size).

        Returns ``output`` (B, T, directions * (proj_size or hidden_size)), zero at padding, and the final
        states at each sentence's last token in torch's layout: ``(h_n, c_n)`` for LSTM, ``h_n`` for GRU.
        """
        layout = "batch, time" if self.batch_first else "time, batch"
        if inputs_table is None and (x.dim() != 3 or x.shape[-1] != self.input_size):
            raise ValueError(f"x: expected shape ({layout}, {self.input_size}), got {tuple(x.shape)}")
        if inputs_table is not None:
            table_shape = (self.directions, self.spec.gates * self.hidden_size)
            if inputs_table.dim() != 3 or (inputs_table.shape[0], inputs_table.shape[2]) != table_shape:
                raise ValueError(f"inputs_table: expected shape ({table_shape[0]}, rows, {table_shape[1]}), got "
                                 f"{tuple(inputs_table.shape)}")
            if x.dim() != 2 or x.dtype != torch.long:
                raise ValueError(f"x: expected ({layout}) long row ids into inputs_table, got {x.dtype} "
                                 f"{tuple(x.shape)}")
        if not self.batch_first:
            x = x.transpose(0, 1)
        batch, time = x.shape[:2]
        h0_all, c0_all = self._initial_state(state, x)
        plan = _make_plan(self._lengths(mask, lengths, batch, time), time, self.directions, x.device)
        tensors = [x, *self.parameters(), *(t for t in (h0_all, c0_all, inputs_table) if t is not None)]
        training = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
        with torch.set_grad_enabled(training):  # inference saves nothing for backward
            output, h_n, c_n = self._layers(x, plan, h0_all, c0_all, fast=training and not self.spec.layer_norm,
                                            inputs_table=inputs_table)
        if not self.batch_first:
            output = output.transpose(0, 1)
        return output, (h_n if c_n is None else (h_n, c_n))

    def _layers(self, x: Tensor, plan: _Plan, h0_all: Tensor | None, c0_all: Tensor | None, fast: bool,
                inputs_table: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        """Every layer over batch-first x (B, T, I), or rows (B, T) of ``inputs_table``: output (B, T, D * R),
        h_n (L * D, B, R), c_n or None."""
        batch, time = x.shape[:2]
        directions, spec = self.directions, self.spec
        recurrent = self.proj_size or self.hidden_size
        gru = spec.variant == "gru"

        like = x if inputs_table is None else inputs_table  # dtype and device of the states
        gx: Tensor | None = None  # the current layer's packed gate inputs, when already known
        if inputs_table is not None:
            table_rows = inputs_table.shape[1]
            offsets = torch.arange(directions, device=x.device)[:, None] * table_rows  # (D, 1)
            gx = _rows(inputs_table.reshape(directions * table_rows, -1), x.reshape(-1)[plan.positions] + offsets)
            layer_input = None  # gx (D, N, K * H) is all the first layer needs
        else:
            # index_select, not advanced indexing: its backward is index_add, twice as fast as index_put here.
            layer_input = _rows(x.reshape(batch * time, -1), plan.positions)  # (D, N, input_size)
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            states = slice(layer * directions, (layer + 1) * directions)
            h0 = (like.new_zeros(directions, batch, recurrent) if h0_all is None
                  else h0_all[states][:, plan.order])  # (D, B, R) sorted
            c0 = None if gru else (like.new_zeros(directions, batch, self.hidden_size) if c0_all is None
                                   else c0_all[states][:, plan.order])  # (D, B, H) sorted
            w_ih, bias, w_hh, hh_bias, peephole, w_hr, norm_weight, norm_bias = self._layer_weights(layer)
            if fast and gx is None:
                out, cells = _Recurrence.apply(spec, plan, layer_input, w_ih, bias, h0, c0, w_hh, hh_bias,
                                               peephole, w_hr)
            else:
                if gx is None:
                    gx = _matmul_nt(layer_input, w_ih, bias, packed_rows=True)  # (D, N, K * H)
                gate_scale = _candidate_scale(spec, like) if spec.layer_norm else None
                w = _StepWeights(w_hh, hh_bias, peephole, w_hr, norm_weight, norm_bias, gate_scale)
                out, cells, _ = _run_steps(spec, plan, w, gx, h0, c0, keep=False)
                gx = None
            h_n.append(out[:, plan.last])  # (D, B, R)
            if not gru:
                c_n.append(cells[:, plan.unorder])  # (D, B, H)
            if layer + 1 < self.num_layers:  # dropout before the gather, so both directions see one mask
                out = F.dropout(out, self.dropout, self.training)
            # Next layer's input in each direction's step order: [forward output; backward output].
            layer_output = out if plan.cross is None else _rows(out.reshape(-1, recurrent), plan.cross).flatten(2)
            if self.residual and layer > 0:
                layer_output = layer_output + layer_input
            layer_input = layer_output

        output = like.new_zeros(batch * time, directions * recurrent).index_put((plan.positions[0],), layer_output[0])
        return output.view(batch, time, -1), torch.cat(h_n), None if gru else torch.cat(c_n)


class LSTM(_RNNBase):
    """Multi-layer, optionally bidirectional LSTM with the parameters of torch's LSTM module, plus variants and options.

    ``variant``: ``lstm`` (torch's cell), ``peephole`` or ``coupled``. Options beyond torch's: ``cell_clip``
    and ``proj_clip`` bound the cell and the projected state, ``layer_norm`` normalises each gate's
    pre-activation, ``residual`` adds each layer's input to its output from the second layer on (after the
    dropout, which acts on each layer's LSTM output but the last's), ``forget_bias`` is added to the forget
    gate's initial ``bias_ih``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = True, dropout: float = 0.0, bidirectional: bool = False, *,
                 variant: str = "lstm", proj_size: int = 0, cell_clip: float | None = None,
                 proj_clip: float | None = None, layer_norm: bool = False, residual: bool = False,
                 forget_bias: float = 0.0) -> None:
        if variant == "gru":
            raise ValueError("variant: for 'gru' use the GRU class; LSTM takes lstm, peephole or coupled")
        super().__init__(variant, input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size=proj_size, cell_clip=cell_clip, proj_clip=proj_clip, layer_norm=layer_norm,
                         residual=residual, forget_bias=forget_bias)


class GRU(_RNNBase):
    """Multi-layer, optionally bidirectional GRU with the parameters of torch's GRU module; ``forward`` returns h_n
    only."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = True, dropout: float = 0.0, bidirectional: bool = False, *,
                 layer_norm: bool = False, residual: bool = False) -> None:
        super().__init__("gru", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         layer_norm=layer_norm, residual=residual)
