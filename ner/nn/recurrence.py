"""The recurrence of one layer in PyTorch ops: what a cell computes, one step of each cell, the loop over steps.

``run_steps`` is plain differentiable ops, so autograd can run through it (layer norm does); with ``keep`` it
saves what the hand-written backward (``ner.nn.recurrence_backward``) reads. The candidate's pre-activation
arrives doubled (see ``StepWeights``), so its tanh is taken as 2 sigmoid - 1.

Shape letters: D directions, N packed rows, H hidden size, R recurrent size (``proj_size`` or H), K gates
(4, or 3 for ``coupled`` and ``gru``), bs the sentences active at a step.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ner.nn.packing import Plan
from ner.nn.products import matmul_nt

VARIANTS = ("lstm", "peephole", "coupled", "gru")
GATES = {"lstm": 4, "peephole": 4, "coupled": 3, "gru": 3}
FORGET_GATE = {"lstm": 1, "peephole": 1, "coupled": 0}
_CANDIDATE = {"lstm": 2, "peephole": 2, "coupled": 1, "gru": 2}  # gate index of g (GRU: n)


@dataclass(frozen=True)
class Spec:
    """What a cell computes; shared by every layer of a module."""

    variant: str
    hidden_size: int
    proj_size: int
    cell_clip: float | None
    proj_clip: float | None
    layer_norm: bool

    @property
    def gates(self) -> int:
        return GATES[self.variant]


class StepWeights(NamedTuple):
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


class LSTMStep(NamedTuple):
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


class GRUStep(NamedTuple):
    """What one GRU step keeps for its backward; every tensor is (D, bs, H)."""

    h_prev: Tensor
    r: Tensor
    z: Tensor
    n: Tensor
    hn: Tensor  # W_hn h_prev + b_hn (doubled)


def candidate_scale(spec: Spec, like: Tensor) -> Tensor:
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


def _lstm_step(
    spec: Spec, w: StepWeights, gx: Tensor, h_prev: Tensor, c_prev: Tensor, keep: bool
) -> tuple[Tensor, Tensor, LSTMStep | None]:
    """Advance every direction one step: gx (D, bs, K * H) input part, returns h (D, bs, R) and c (D, bs, H).

    The candidate's pre-activation arrives doubled (see ``StepWeights``), so g = 2 sigmoid - 1 = tanh.
    Saves what ``_lstm_step_backward`` needs when ``keep``.
    """
    pre = matmul_nt(h_prev, w.hh, add=gx)  # (D, bs, K * H)
    if w.norm_weight is not None:
        pre = (
            _gate_norm(pre.unflatten(-1, (spec.gates, spec.hidden_size)), w.norm_weight, w.norm_bias) * w.gate_scale
        ).flatten(2)
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
    h_raw = m if w.hr is None else matmul_nt(m, w.hr)  # (D, bs, R)
    h = h_raw if spec.proj_clip is None else h_raw.clamp(-spec.proj_clip, spec.proj_clip)
    if not keep:
        return h, c, None
    dc_dh = torch.addcmul(o, m, tanh_c, value=-1)
    return h, c, LSTMStep(h_prev, c_prev, act, i, g, c_raw, c, tanh_c, dc_dh, m, h_raw)


def _gru_step(spec: Spec, w: StepWeights, gx: Tensor, h_prev: Tensor) -> tuple[Tensor, GRUStep]:
    """Advance every direction one GRU step: gx (D, bs, 3H) is W_i x + b_i, returns h (D, bs, H)."""
    hidden = spec.hidden_size
    gh = matmul_nt(h_prev, w.hh, w.hh_bias)  # (D, bs, 3H)
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
    return h, GRUStep(h_prev, r, z, n, hn)


def run_steps(
    spec: Spec, plan: Plan, w: StepWeights, gx: Tensor, h0: Tensor, c0: Tensor | None, keep: bool
) -> tuple[Tensor, Tensor | None, list]:
    """Run the recurrence of one layer over packed input projections gx (D, N, K * H).

    Returns the outputs (D, N, R), the final cells (D, B, H) in sorted order (None for GRU) and, when ``keep``,
    each step's saved tensors. Plain differentiable ops: autograd can run through it (layer norm does).
    """
    outputs, final_cells, steps = [], [], []
    h, c = h0, c0  # (D, B, R), (D, B, H)
    for t, (offset, size) in enumerate(zip(plan.offsets, plan.batch_sizes)):
        gx_t = gx[:, offset : offset + size]  # (D, bs, K * H)
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
