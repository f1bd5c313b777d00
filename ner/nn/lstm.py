"""Our LSTM and GRU layers: torch's parameters and numbers, plus LSTM variants, masks and a fast recurrence.

``LSTM`` and ``GRU`` are drop-in for ``torch.nn.LSTM`` / ``torch.nn.GRU`` (same parameter names and shapes,
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
out of the batch. Direction 1 reads sentence b at step t from position ``length_b - 1 - t``. Per layer the
input projection of every step and direction is one batched matmul; each step advances both directions with
one ``baddbmm`` on direction-stacked weights plus a few elementwise ops. Training runs a hand-written backward
through time (``_Recurrence``) whose weight gradients are one matmul over all steps; inference saves nothing.
Layer normalisation runs the same steps under autograd instead.

Shape letters: B batch, T time, D directions (1 or 2), N packed rows (the sum of the lengths), H hidden size,
R recurrent size (``proj_size`` or H), K gates (4, or 3 for ``coupled`` and ``gru``), I layer input size.
"""

from __future__ import annotations

import math
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


def _make_plan(lengths: Tensor, time: int, directions: int, device: torch.device) -> _Plan:
    """Build the packed layout for ``lengths`` (B,) (a CPU tensor, all in 1..time)."""
    batch = len(lengths)
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


class _StepWeights(NamedTuple):
    """Direction-stacked weights the recurrence reads at every step."""

    hh_t: Tensor  # (D, R, K * H) transposed recurrent weight
    hh_bias: Tensor | None  # (D, 1, K * H) GRU only: b_hh, which r multiplies in the candidate
    peephole: Tensor | None  # (D, 3, H) diagonal weights c -> i, f, o
    hr_t: Tensor | None  # (D, H, R) transposed projection
    norm_weight: Tensor | None  # (D, 1, K, H) layer-norm gain per gate
    norm_bias: Tensor | None  # (D, 1, K, H) layer-norm shift per gate
    gate_scale: Tensor | None  # (K, 1) LSTM: 1 for sigmoid gates, 2 for the candidate (see _lstm_step)


class _LSTMStep(NamedTuple):
    """What one LSTM step keeps for its backward; every tensor is (D, bs, H) unless marked."""

    h_prev: Tensor  # (D, bs, R)
    c_prev: Tensor
    i: Tensor
    f: Tensor
    g: Tensor
    o: Tensor
    c_raw: Tensor  # before clipping
    c: Tensor
    tanh_c: Tensor
    m: Tensor  # o * tanh(c), before the projection
    h_raw: Tensor  # (D, bs, R) before clipping


class _GRUStep(NamedTuple):
    """What one GRU step keeps for its backward; every tensor is (D, bs, H)."""

    h_prev: Tensor
    r: Tensor
    z: Tensor
    n: Tensor
    hn: Tensor  # W_hn h_prev + b_hn


def _gate_scale(spec: _Spec, like: Tensor) -> Tensor | None:
    """(K, 1) factors on an LSTM's gate pre-activations: 2 on the candidate g, whose tanh is taken as a sigmoid."""
    if spec.variant == "gru":
        return None
    scale = [1.0] * spec.gates
    scale[spec.gates - 2] = 2.0  # g is the gate before o
    return like.new_tensor(scale)[:, None]


def _tanh(x: Tensor) -> Tensor:
    """tanh(x) as 2 sigmoid(2x) - 1: ATen's CPU tanh is about ten times slower than its sigmoid."""
    return torch.sigmoid(x * 2).mul(2).sub_(1)


def _gate_norm(pre: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """Layer-normalise each gate's pre-activation (..., K, H) over H, then scale and shift."""
    return F.layer_norm(pre, pre.shape[-1:]) * weight + bias


def _lstm_step(spec: _Spec, w: _StepWeights, gx: Tensor, h_prev: Tensor, c_prev: Tensor) -> tuple[Tensor, Tensor, _LSTMStep]:
    """Advance every direction one step: gx (D, bs, K * H) input part, returns h (D, bs, R) and c (D, bs, H)."""
    pre = torch.baddbmm(gx, h_prev, w.hh_t).unflatten(-1, (spec.gates, spec.hidden_size))  # (D, bs, K, H)
    if w.norm_weight is not None:
        pre = _gate_norm(pre, w.norm_weight, w.norm_bias)
    if spec.variant == "peephole":
        i, f = torch.sigmoid(pre[:, :, :2] + w.peephole[:, None, :2] * c_prev[:, :, None]).unbind(2)
        g = _tanh(pre[:, :, 2])
    else:
        # One sigmoid for every gate, the candidate's input doubled: tanh(x) = 2 sigmoid(2x) - 1.
        act = torch.sigmoid(pre * w.gate_scale)  # (D, bs, K, H)
        if spec.variant == "coupled":
            f, o = act[:, :, 0], act[:, :, 2]
            i = 1 - f
            g = act[:, :, 1].mul(2).sub_(1)
        else:
            i, f, o = act[:, :, 0], act[:, :, 1], act[:, :, 3]
            g = act[:, :, 2].mul(2).sub_(1)
    c_raw = torch.addcmul(f * c_prev, i, g)
    c = c_raw if spec.cell_clip is None else c_raw.clamp(-spec.cell_clip, spec.cell_clip)
    if spec.variant == "peephole":
        o = torch.sigmoid(torch.addcmul(pre[:, :, 3], w.peephole[:, None, 2], c))
    tanh_c = _tanh(c)
    m = o * tanh_c
    h_raw = m if w.hr_t is None else torch.bmm(m, w.hr_t)  # (D, bs, R)
    h = h_raw if spec.proj_clip is None else h_raw.clamp(-spec.proj_clip, spec.proj_clip)
    return h, c, _LSTMStep(h_prev, c_prev, i, f, g, o, c_raw, c, tanh_c, m, h_raw)


def _gru_step(spec: _Spec, w: _StepWeights, gx: Tensor, h_prev: Tensor) -> tuple[Tensor, _GRUStep]:
    """Advance every direction one GRU step: gx (D, bs, 3H) is W_i x + b_i, returns h (D, bs, H)."""
    hidden = spec.hidden_size
    gh = torch.bmm(h_prev, w.hh_t) if w.hh_bias is None else torch.baddbmm(w.hh_bias, h_prev, w.hh_t)
    gx, gh = gx.unflatten(-1, (3, hidden)), gh.unflatten(-1, (3, hidden))  # (D, bs, 3, H)
    pre_rz = gx[:, :, :2] + gh[:, :, :2]
    if w.norm_weight is not None:
        pre_rz = _gate_norm(pre_rz, w.norm_weight[:, :, :2], w.norm_bias[:, :, :2])
    r, z = torch.sigmoid(pre_rz).unbind(2)
    hn = gh[:, :, 2]
    pre_n = torch.addcmul(gx[:, :, 2], r, hn)
    if w.norm_weight is not None:
        pre_n = _gate_norm(pre_n, w.norm_weight[:, :, 2], w.norm_bias[:, :, 2])
    n = _tanh(pre_n)
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
            h, saved = _gru_step(spec, w, gx_t, h[:, :size])
        else:
            h, c, saved = _lstm_step(spec, w, gx_t, h[:, :size], c[:, :size])
            next_size = plan.batch_sizes[t + 1] if t + 1 < len(plan.batch_sizes) else 0
            if next_size < size:
                final_cells.append(c[:, next_size:])  # sentences whose last step this is
        outputs.append(h)
        if keep:
            steps.append(saved)
    c_n = None if c0 is None else torch.cat(final_cells[::-1], 1)
    return torch.cat(outputs, 1), c_n, steps


def _sigmoid_backward(grad: Tensor, y: Tensor, out: Tensor) -> None:
    """out = grad * y * (1 - y): the gradient through y = sigmoid(x)."""
    u = grad * y
    torch.addcmul(u, u, y, value=-1, out=out)


def _tanh_backward(grad: Tensor, y: Tensor, out: Tensor | None = None) -> Tensor:
    """grad * (1 - y^2): the gradient through y = tanh(x)."""
    return torch.addcmul(grad, grad * y, y, value=-1, out=out)


def _lstm_step_backward(spec: _Spec, w: _StepWeights, s: _LSTMStep, dh: Tensor,
                        dc: Tensor) -> tuple[Tensor, Tensor | None]:
    """Gradients of one LSTM step from dh (D, bs, R) and dc (D, bs, H) flowing into its outputs.

    Returns the gate pre-activation gradient (D, bs, K * H) and, with a projection, the gradient of the
    unclipped projection output (D, bs, R); overwrites ``dc`` with the gradient of c_prev.
    """
    d_c_prev = dc
    d_h_raw = None
    if spec.proj_clip is not None:
        dh = dh * (s.h_raw.abs() <= spec.proj_clip)
    if w.hr_t is not None:
        d_h_raw, dh = dh, torch.bmm(dh, w.hr_t.transpose(1, 2))  # (D, bs, H)
    d_pre = dh.new_empty(*dh.shape[:2], spec.gates, spec.hidden_size)  # (D, bs, K, H)
    dh_o = dh * s.o
    d_o = dh_o * s.tanh_c  # gradient of o, times o
    torch.addcmul(d_o, d_o, s.o, value=-1, out=d_pre[:, :, -1])
    dc = torch.addcmul(dc + dh_o, d_o, s.tanh_c, value=-1)  # + dh * o * (1 - tanh(c)^2)
    if spec.variant == "peephole":
        dc.addcmul_(d_pre[:, :, 3], w.peephole[:, None, 2])
    if spec.cell_clip is not None:
        dc = dc * (s.c_raw.abs() <= spec.cell_clip)
    if spec.variant == "coupled":
        _sigmoid_backward(dc * (s.c_prev - s.g), s.f, d_pre[:, :, 0])  # i = 1 - f
        _tanh_backward(dc * s.i, s.g, d_pre[:, :, 1])
    else:
        _sigmoid_backward(dc * s.g, s.i, d_pre[:, :, 0])
        _sigmoid_backward(dc * s.c_prev, s.f, d_pre[:, :, 1])
        _tanh_backward(dc * s.i, s.g, d_pre[:, :, 2])
    torch.mul(dc, s.f, out=d_c_prev)
    if spec.variant == "peephole":
        d_c_prev.addcmul_(d_pre[:, :, 0], w.peephole[:, None, 0]).addcmul_(d_pre[:, :, 1], w.peephole[:, None, 1])
    return d_pre.flatten(2), d_h_raw


def _gru_step_backward(s: _GRUStep, dh: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of one GRU step from dh (D, bs, H).

    Returns the gradient of W_h h_prev + b_h (D, bs, 3H), that of the candidate's pre-activation (D, bs, H)
    (the input part's n slot) and the direct gradient dh * z into h_prev.
    """
    d_gh = dh.new_empty(*dh.shape[:2], 3, dh.shape[-1])  # (D, bs, 3, H)
    dh_z = dh * s.z
    d_pre_n = _tanh_backward(dh - dh_z, s.n)
    _sigmoid_backward(dh * (s.h_prev - s.n), s.z, d_gh[:, :, 1])
    _sigmoid_backward(d_pre_n * s.hn, s.r, d_gh[:, :, 0])
    torch.mul(d_pre_n, s.r, out=d_gh[:, :, 2])
    return d_gh.flatten(2), d_pre_n, dh_z


class _Recurrence(torch.autograd.Function):
    """One layer's recurrence over a packed batch, with a hand-written backward through time.

    Inputs: gx (D, N, K * H), h0 (D, B, R), c0 (D, B, H) or None (GRU), then the ``_StepWeights`` fields
    without layer norm. Outputs: (D, N, R) and the final cells (D, B, H) in sorted order (None for GRU).
    """

    @staticmethod
    def forward(ctx, spec: _Spec, plan: _Plan, gx: Tensor, h0: Tensor, c0: Tensor | None, hh_t: Tensor,
                hh_bias: Tensor | None, peephole: Tensor | None, hr_t: Tensor | None):
        w = _StepWeights(hh_t, hh_bias, peephole, hr_t, None, None, _gate_scale(spec, gx))
        out, c_n, ctx.steps = _run_steps(spec, plan, w, gx, h0, c0, keep=True)
        ctx.spec, ctx.plan, ctx.weights = spec, plan, w
        return out, c_n

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out: Tensor, d_c_n: Tensor | None):
        spec, plan, w, steps = ctx.spec, ctx.plan, ctx.weights, ctx.steps
        gru = spec.variant == "gru"
        hh = w.hh_t.transpose(1, 2)  # (D, K * H, R)
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
                d_step, d_hr = _lstm_step_backward(spec, w, steps[t], dh, d_c[:, :size])
                d_h_raw.append(d_hr)
            target.baddbmm_(d_step, hh)
            d_gh.append(d_step)

        d_gh = torch.cat(d_gh[::-1], 1)  # (D, N, K * H)
        h_prev = torch.cat([s.h_prev for s in steps], 1)  # (D, N, R)
        d_hh_t = torch.bmm(h_prev.transpose(1, 2), d_gh)  # (D, R, K * H)
        d_gx, d_hh_bias, d_peephole, d_hr_t = d_gh, None, None, None
        if gru:
            d_gx = d_gh.clone()
            d_gx.unflatten(-1, (3, spec.hidden_size))[:, :, 2] = torch.cat(d_pre_n[::-1], 1)
            if w.hh_bias is not None:
                d_hh_bias = d_gh.sum(1, keepdim=True)
        if spec.variant == "peephole":
            d_pre = d_gh.unflatten(-1, (4, spec.hidden_size))  # (D, N, 4, H)
            c_prev = torch.cat([s.c_prev for s in steps], 1)  # (D, N, H)
            c = torch.cat([s.c for s in steps], 1)
            d_peephole = torch.stack([(d_pre[:, :, 0] * c_prev).sum(1), (d_pre[:, :, 1] * c_prev).sum(1),
                                      (d_pre[:, :, 3] * c).sum(1)], 1)  # (D, 3, H)
        if w.hr_t is not None:
            m = torch.cat([s.m for s in steps], 1)  # (D, N, H)
            d_hr_t = torch.bmm(m.transpose(1, 2), torch.cat(d_h_raw[::-1], 1))  # (D, H, R)
        return None, None, d_gx, d_h0, d_c, d_hh_t, d_hh_bias, d_peephole, d_hr_t


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
        gate_size = self.spec.gates * hidden_size
        recurrent = proj_size or hidden_size
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else recurrent * self.directions
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

    def _stacked(self, kind: str, layer: int) -> Tensor | None:
        """The parameter ``{kind}_l{layer}`` of every direction, stacked (D, ...), or None if absent."""
        names = [f"{kind}_l{layer}{suffix}" for suffix in self._suffixes]
        if not hasattr(self, names[0]):
            return None
        parts = [getattr(self, name) for name in names]
        return parts[0][None] if len(parts) == 1 else torch.stack(parts)

    def _lengths(self, mask: Tensor | None, lengths: Tensor | Sequence[int] | None, batch: int,
                 time: int) -> Tensor:
        """Sequence lengths (B,) on the CPU from a left-aligned mask, explicit lengths, or full length."""
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
            return torch.full((batch,), time, dtype=torch.long)
        lengths = torch.as_tensor(lengths).long().cpu()
        if lengths.shape != (batch,) or (batch and not bool(((lengths >= 1) & (lengths <= time)).all())):
            raise ValueError(f"lengths: expected {batch} values in 1..{time} (mask rows need a True first "
                             f"step), got {lengths.tolist()}")
        return lengths

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

    def forward(self, x: Tensor, mask: Tensor | None = None, state: Tensor | tuple[Tensor, Tensor] | None = None,
                *, lengths: Tensor | Sequence[int] | None = None) -> tuple[Tensor, Tensor | tuple[Tensor, Tensor]]:
        """Run every layer over ``x`` (B, T, input_size) (or (T, B, input_size) without batch_first).

        ``mask`` (B, T) bool marks real tokens, left-aligned (or give ``lengths`` (B,) instead; neither means
        full length). ``state`` is torch's initial state: ``(h0, c0)`` for LSTM, ``h0`` for GRU, with h0
        (layers * directions, B, proj_size or hidden_size) and c0 (layers * directions, B, hidden_size).

        Returns ``output`` (B, T, directions * (proj_size or hidden_size)), zero at padding, and the final
        states at each sentence's last token in torch's layout: ``(h_n, c_n)`` for LSTM, ``h_n`` for GRU.
        """
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            layout = "batch, time" if self.batch_first else "time, batch"
            raise ValueError(f"x: expected shape ({layout}, {self.input_size}), got {tuple(x.shape)}")
        if not self.batch_first:
            x = x.transpose(0, 1)
        batch, time, _ = x.shape
        h0_all, c0_all = self._initial_state(state, x)
        plan = _make_plan(self._lengths(mask, lengths, batch, time), time, self.directions, x.device)
        tensors = [x, *self.parameters(), *(t for t in (h0_all, c0_all) if t is not None)]
        training = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
        with torch.set_grad_enabled(training):  # inference saves nothing for backward
            output, h_n, c_n = self._layers(x, plan, h0_all, c0_all, fast=training and not self.spec.layer_norm)
        if not self.batch_first:
            output = output.transpose(0, 1)
        return output, (h_n if c_n is None else (h_n, c_n))

    def _layers(self, x: Tensor, plan: _Plan, h0_all: Tensor | None, c0_all: Tensor | None,
                fast: bool) -> tuple[Tensor, Tensor, Tensor | None]:
        """Every layer over batch-first x (B, T, I): output (B, T, D * R), h_n (L * D, B, R), c_n or None."""
        batch, time, _ = x.shape
        directions, spec = self.directions, self.spec
        recurrent = self.proj_size or self.hidden_size
        gru = spec.variant == "gru"

        layer_input = x.reshape(batch * time, -1)[plan.positions]  # (D, N, input_size)
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            states = slice(layer * directions, (layer + 1) * directions)
            h0 = (x.new_zeros(directions, batch, recurrent) if h0_all is None
                  else h0_all[states][:, plan.order])  # (D, B, R) sorted
            c0 = None if gru else (x.new_zeros(directions, batch, self.hidden_size) if c0_all is None
                                   else c0_all[states][:, plan.order])  # (D, B, H) sorted
            w_ih, b_ih, b_hh = (self._stacked(kind, layer) for kind in ("weight_ih", "bias_ih", "bias_hh"))
            if b_ih is None:
                gx = torch.bmm(layer_input, w_ih.transpose(1, 2))  # (D, N, K * H)
            else:
                bias = b_ih if gru else b_ih + b_hh
                gx = torch.baddbmm(bias[:, None], layer_input, w_ih.transpose(1, 2))
            hr = self._stacked("weight_hr", layer)
            hh_bias = b_hh[:, None] if gru and b_hh is not None else None
            w_hh_t = self._stacked("weight_hh", layer).transpose(1, 2)
            peephole = self._stacked("weight_peephole", layer)
            peephole = None if peephole is None else peephole.unflatten(-1, (3, self.hidden_size))
            hr_t = None if hr is None else hr.transpose(1, 2)
            if fast:
                out, cells = _Recurrence.apply(spec, plan, gx, h0, c0, w_hh_t, hh_bias, peephole, hr_t)
            else:
                norm = [self._stacked(kind, layer) for kind in ("norm_weight", "norm_bias")]
                norm = [None if p is None else p.unflatten(-1, (spec.gates, self.hidden_size))[:, None]
                        for p in norm]
                w = _StepWeights(w_hh_t, hh_bias, peephole, hr_t, *norm, _gate_scale(spec, gx))
                out, cells, _ = _run_steps(spec, plan, w, gx, h0, c0, keep=False)
            h_n.append(out[:, plan.last])  # (D, B, R)
            if not gru:
                c_n.append(cells[:, plan.unorder])  # (D, B, H)
            # Next layer's input in each direction's step order: [forward output; backward output].
            layer_output = out if plan.cross is None else out.reshape(-1, recurrent)[plan.cross].flatten(2)
            if self.residual and layer > 0:
                layer_output = layer_output + layer_input
            if layer + 1 < self.num_layers:
                layer_input = F.dropout(layer_output, self.dropout, self.training)

        output = x.new_zeros(batch * time, directions * recurrent).index_put((plan.positions[0],), layer_output[0])
        return output.view(batch, time, -1), torch.cat(h_n), None if gru else torch.cat(c_n)


class LSTM(_RNNBase):
    """Multi-layer, optionally bidirectional LSTM with torch.nn.LSTM's parameters, plus variants and options.

    ``variant``: ``lstm`` (torch's cell), ``peephole`` or ``coupled``. Options beyond torch's: ``cell_clip``
    and ``proj_clip`` bound the cell and the projected state, ``layer_norm`` normalises each gate's
    pre-activation, ``residual`` adds each layer's input to its output from the second layer on,
    ``forget_bias`` is added to the forget gate's initial ``bias_ih``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = True, dropout: float = 0.0, bidirectional: bool = False, *,
                 variant: str = "lstm", proj_size: int = 0, cell_clip: float | None = None,
                 proj_clip: float | None = None, layer_norm: bool = False, residual: bool = False,
                 forget_bias: float = 0.0) -> None:
        if variant == "gru":
            raise ValueError("variant: 'gru' is ner.nn.GRU, expected one of lstm, peephole, coupled")
        super().__init__(variant, input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size=proj_size, cell_clip=cell_clip, proj_clip=proj_clip, layer_norm=layer_norm,
                         residual=residual, forget_bias=forget_bias)


class GRU(_RNNBase):
    """Multi-layer, optionally bidirectional GRU with torch.nn.GRU's parameters; ``forward`` returns h_n only."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = True, dropout: float = 0.0, bidirectional: bool = False, *,
                 layer_norm: bool = False, residual: bool = False) -> None:
        super().__init__("gru", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         layer_norm=layer_norm, residual=residual)
