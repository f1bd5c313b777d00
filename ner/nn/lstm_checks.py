"""Argument checks of the LSTM and GRU layers (``ner.nn.lstm``): constructor options, inputs, masks or lengths and
initial states, each a ValueError that names the argument, what was expected and what came in.

Shape letters as in ``ner.nn.lstm``: B batch, T time, D directions, H hidden size, R recurrent size, K gates.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ner.nn.recurrence import VARIANTS


def check_options(
    variant: str,
    input_size: int,
    hidden_size: int,
    num_layers: int,
    dropout: float,
    proj_size: int,
    cell_clip: float | None,
    proj_clip: float | None,
    forget_bias: float,
) -> None:
    """Check the constructor's sizes and options against each other."""
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {', '.join(VARIANTS)}, got {variant!r}")
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
        if value < 1:
            raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    if not 0.0 <= dropout <= 1.0:
        raise ValueError(f"dropout: expected a probability in [0, 1], got {dropout!r}")
    if not 0 <= proj_size < hidden_size:
        raise ValueError(
            f"proj_size: expected 0 (none) or an integer below hidden_size {hidden_size}, got {proj_size!r}"
        )
    if proj_clip is not None and not proj_size:
        raise ValueError("proj_clip: needs proj_size > 0")
    for name, value in (("cell_clip", cell_clip), ("proj_clip", proj_clip)):
        if value is not None and value <= 0:
            raise ValueError(f"{name}: expected a positive bound or None, got {value!r}")
    if variant == "gru" and (proj_size or cell_clip is not None or forget_bias):
        raise ValueError("gru: proj_size, cell_clip and forget_bias apply to LSTM cells only")


def check_inputs(
    x: Tensor, inputs_table: Tensor | None, input_size: int, batch_first: bool, directions: int, gate_width: int
) -> None:
    """Check ``forward``'s x (features, or long row ids into ``inputs_table`` (D, V, K * H), gate_width K * H)."""
    layout = "batch, time" if batch_first else "time, batch"
    if inputs_table is None and (x.dim() != 3 or x.shape[-1] != input_size):
        raise ValueError(f"x: expected shape ({layout}, {input_size}), got {tuple(x.shape)}")
    if inputs_table is not None:
        if inputs_table.dim() != 3 or (inputs_table.shape[0], inputs_table.shape[2]) != (directions, gate_width):
            raise ValueError(
                f"inputs_table: expected shape ({directions}, rows, {gate_width}), got {tuple(inputs_table.shape)}"
            )
        if x.dim() != 2 or x.dtype != torch.long:
            raise ValueError(f"x: expected ({layout}) long row ids into inputs_table, got {x.dtype} {tuple(x.shape)}")


def sequence_lengths(
    mask: Tensor | None, lengths: Tensor | Sequence[int] | None, batch: int, time: int
) -> tuple[int, ...]:
    """Sequence lengths from a left-aligned mask (B, T), explicit lengths (B,), or full length."""
    if mask is not None and lengths is not None:
        raise ValueError("pass mask or lengths, not both")
    if mask is not None:
        if mask.dtype != torch.bool or mask.shape != (batch, time):
            raise ValueError(
                f"mask: expected a bool tensor of shape {(batch, time)} (batch, time), got "
                f"{mask.dtype} {tuple(mask.shape)}"
            )
        counts = mask.sum(1)  # (B,)
        if not torch.equal(mask, torch.arange(time, device=mask.device) < counts[:, None]):
            raise ValueError(
                "mask: expected left-aligned padding (each row True then False), got a row with False before True"
            )
        lengths = counts
    elif lengths is None:
        return (time,) * batch
    values = tuple(int(n) for n in (lengths.tolist() if isinstance(lengths, Tensor) else lengths))
    if len(values) != batch or not all(1 <= n <= time for n in values):
        raise ValueError(
            f"lengths: expected {batch} values in 1..{time} (mask rows need a True first step), got {list(values)}"
        )
    return values


def check_initial_state(
    state: Tensor | tuple[Tensor, Tensor] | None, gru: bool, batch: int, stacked: int, recurrent: int, hidden: int
) -> tuple[Tensor | None, Tensor | None]:
    """Check ``state`` against torch's shapes: h (L * D, B, R) and, for LSTM, c (L * D, B, H); ``stacked`` is
    L * D. Returns (h0, c0), c0 None for GRU, both None without a state."""
    if state is None:
        return None, None
    h0, c0 = (state, None) if gru else state
    expected = [("h0", h0, (stacked, batch, recurrent))]
    if not gru:
        expected.append(("c0", c0, (stacked, batch, hidden)))
    for name, tensor, shape in expected:
        if tuple(tensor.shape) != shape:
            raise ValueError(
                f"state {name}: expected shape {shape} (layers * directions, batch, size), got {tuple(tensor.shape)}"
            )
    return h0, c0
