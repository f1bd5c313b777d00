"""The packed, length-sorted layout in which the recurrence runs a batch, and ``reverse_padded``.

Sentences are sorted longest first and packed time-major: packed row n is (step t, sentence b), the rows of step
t are contiguous and hold the first ``batch_sizes[t]`` sentences, so finished sentences drop out of the batch and
padding is never computed. Direction 1 reads sentence b at step t from position ``length_b - 1 - t``.

Shape letters: B batch, T time, D directions (1 or 2), N packed rows (the sum of the lengths).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


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
class Plan:
    """The packed, length-sorted layout of one batch (see the module docstring), shared by every layer."""

    batch_sizes: list[int]  # active sentences at each step, non-increasing
    offsets: list[int]  # first packed row of each step
    positions: Tensor  # (D, N) row b * T + t of the caller's (B, T) grid that packed row n reads, per direction
    cross: Tensor | None  # (D, N, D) row of the (D * N) outputs feeding the next layer's direction d', part d
    scatter: Tensor  # (D * N,) row positions[d, n] * D + d of the caller's (B * T * D) output grid, per output row
    last: Tensor  # (B,) packed row of each sentence's last step, in the caller's order
    order: Tensor  # (B,) caller's index of each sorted sentence, longest first
    unorder: Tensor  # (B,) sorted index of each caller's sentence


@functools.lru_cache(maxsize=4)
def make_plan(lengths: tuple[int, ...], time: int, directions: int, device: torch.device) -> Plan:
    """The packed layout for ``lengths`` (all in 1..time); cached, its index tensors are never modified.

    The cache is small on purpose: repeated calls on one batch hit it, while training's batches almost never
    repeat, and 256 plans kept across steps left their index tensors scattered through the heap (a CoNLL-2003
    run peaked 20 MB higher)."""
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

    scatter = (positions * directions + torch.arange(directions)[:, None]).flatten()  # (D * N,)

    def put(index: Tensor) -> Tensor:
        return index.to(device, non_blocking=True)

    return Plan(
        batch_sizes,
        offsets,
        put(positions),
        None if cross is None else put(cross),
        put(scatter),
        put(last),
        put(order),
        put(unorder),
    )


def gather_rows(source: Tensor, index: Tensor) -> Tensor:
    """source[index] for a 2-D source and an index of any shape: (*index.shape, source.shape[1])."""
    return source.index_select(0, index.flatten()).view(*index.shape, source.shape[1])
