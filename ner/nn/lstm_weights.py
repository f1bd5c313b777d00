"""One LSTM or GRU layer's parameters in the form the recurrence (``ner.nn.recurrence``, the C++ kernel) reads:
stacked over directions, the LSTM's two biases summed, without layer norm the candidate's rows doubled (see
``StepWeights``), peephole and norm weights split per gate.

Shape letters as in ``ner.nn.lstm``: D directions, K gates, H hidden size, R recurrent size, I layer input size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from torch import Tensor

from ner.nn.recurrence import Spec, candidate_scale


class LayerWeights(NamedTuple):
    """One layer's parameters, direction-stacked and ready for ``Recurrence`` / ``run_steps``."""

    w_ih: Tensor  # (D, K * H, I)
    bias: Tensor | None  # (D, K * H): b_ih (+ b_hh for LSTM)
    w_hh: Tensor  # (D, K * H, R)
    hh_bias: Tensor | None  # (D, K * H) GRU's b_hh
    peephole: Tensor | None  # (D, 3, H)
    w_hr: Tensor | None  # (D, R, H)
    norm_weight: Tensor | None  # (D, 1, K, H)
    norm_bias: Tensor | None  # (D, 1, K, H)


def layer_weights(spec: Spec, hidden_size: int, stacked: Callable[[str], Tensor | None]) -> LayerWeights:
    """The layer's weights from ``stacked(kind)``: its parameter ``kind`` (``weight_ih``, ``bias_hh``, ...) stacked
    over directions (D, ...), or None where the layer has none."""
    kinds = ("weight_ih", "weight_hh", "weight_hr", "bias_ih", "bias_hh", "weight_peephole", "norm_weight", "norm_bias")
    w_ih, w_hh, w_hr, b_ih, b_hh, peephole, norm_weight, norm_bias = (stacked(kind) for kind in kinds)
    gru = spec.variant == "gru"
    bias = b_ih if gru or b_ih is None else b_ih + b_hh  # (D, K * H)
    hh_bias = b_hh if gru else None
    if not spec.layer_norm:  # double the candidate's rows (see StepWeights)
        row_scale = candidate_scale(spec, w_ih).expand(-1, hidden_size).flatten()  # (K * H,)
        w_ih, w_hh = w_ih * row_scale[:, None], w_hh * row_scale[:, None]
        bias, hh_bias = (None if b is None else b * row_scale for b in (bias, hh_bias))
    norm = [
        None if p is None else p.unflatten(-1, (spec.gates, hidden_size))[:, None] for p in (norm_weight, norm_bias)
    ]  # (D, 1, K, H)
    peephole = None if peephole is None else peephole.unflatten(-1, (3, hidden_size))  # (D, 3, H)
    return LayerWeights(w_ih, bias, w_hh, hh_bias, peephole, w_hr, *norm)
