"""Input checks of the CRF (``ner.nn.crf``): emissions, masks, tag ids and segments, each a ValueError that says
what was expected and what came in.

Shapes: B = batch, T = time (longest sentence), K = number of tags, N = number of segments.
"""

from __future__ import annotations

import torch


def check_emissions(emissions: torch.Tensor, mask: torch.Tensor | None, num_tags: int) -> torch.Tensor:
    """Check emissions (B, T, K) and mask (B, T) (whole left-aligned-prefix precondition); return the mask (all on
    if None)."""
    if emissions.dim() != 3 or emissions.size(2) != num_tags:
        raise ValueError(f"emissions must have shape (batch, time, {num_tags}), got {tuple(emissions.shape)}")
    if emissions.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"emissions must be float32 or float64, got {emissions.dtype}")
    if emissions.size(1) == 0:
        raise ValueError(f"emissions must have at least one time step, got shape {tuple(emissions.shape)}")
    if mask is None:
        return emissions.new_ones(emissions.shape[:2], dtype=torch.bool)
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor, got {mask.dtype}")
    if mask.shape != emissions.shape[:2]:
        raise ValueError(
            f"mask must have shape {tuple(emissions.shape[:2])} (batch, time) like emissions, got {tuple(mask.shape)}"
        )
    first_off = ~mask[:, 0]  # (B,)
    on_after_off = mask[:, 1:] & ~mask[:, :-1]  # (B, T-1)
    if (first_off | on_after_off.any(dim=1)).any():  # one device sync on the happy path
        if first_off.any():
            row = int(first_off.nonzero()[0, 0])
            raise ValueError(f"mask must be on at the first time step of every sentence, got off in row {row}")
        row, step = (int(index) for index in on_after_off.nonzero()[0])
        raise ValueError(
            f"mask must be left-aligned (on for a prefix of each row, then off), got on after off in row {row} "
            f"at time step {step + 1}"
        )
    return mask


def check_tags(tags: torch.Tensor, mask: torch.Tensor, num_tags: int, name: str) -> None:
    """Check a (B, T) int64 tag tensor whose values are tag ids wherever the mask is on."""
    if tags.dtype != torch.int64:
        raise ValueError(f"{name} must be an int64 tensor, got {tags.dtype}")
    if tags.shape != mask.shape:
        raise ValueError(f"{name} must have shape {tuple(mask.shape)} (batch, time), got {tuple(tags.shape)}")
    out_of_range = mask & ((tags < 0) | (tags >= num_tags))  # (B, T)
    if out_of_range.any():
        row, step = (int(index) for index in out_of_range.nonzero()[0])
        raise ValueError(
            f"{name} must be tag ids in [0, {num_tags}) where the mask is on, got {int(tags[row, step])} "
            f"in row {row} at time step {step}"
        )


def check_segments(mask: torch.Tensor, batch_index: torch.Tensor, start: torch.Tensor, end: torch.Tensor) -> None:
    """Check N segments: int64 (N,) tensors with 0 <= batch_index < B and 0 <= start < end <= length."""
    for name, values in (("batch_index", batch_index), ("start", start), ("end", end)):
        if values.dtype != torch.int64 or values.dim() != 1 or values.shape != batch_index.shape:
            raise ValueError(
                f"{name} must be a 1-D int64 tensor of the same length as batch_index, "
                f"got {values.dtype} {tuple(values.shape)}"
            )
    bad_row = (batch_index < 0) | (batch_index >= mask.size(0))  # (N,)
    if bad_row.any():
        index = int(bad_row.nonzero()[0, 0])
        raise ValueError(f"batch_index must be in [0, {mask.size(0)}), got {int(batch_index[index])} at {index}")
    lengths = mask.sum(dim=1)[batch_index]  # (N,)
    bad_range = (start < 0) | (start >= end) | (end > lengths)  # (N,)
    if bad_range.any():
        index = int(bad_range.nonzero()[0, 0])
        raise ValueError(
            f"segments must satisfy 0 <= start < end <= sentence length, got start {int(start[index])}, "
            f"end {int(end[index])}, length {int(lengths[index])} at {index}"
        )
