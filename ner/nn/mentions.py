"""Document context for the tagger: each token sees the encoder states of the other mentions of its word."""

from __future__ import annotations

import torch


def mean_of_other_mentions(hidden: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """The mean of ``hidden`` over the other tokens of each token's group; zero for a token alone in its group.

    hidden (..., C); groups (...) long, equal ids for mentions of one word in one document, 0 on padding
    (padding gets zeros). One pass: per-group sums, then each token's own state taken out again.
    """
    flat = hidden.reshape(-1, hidden.shape[-1])  # (N, C)
    ids = groups.reshape(-1)  # (N,)
    size = int(ids.max()) + 1
    sums = flat.new_zeros(size, flat.shape[1]).index_add_(0, ids, flat)  # (G, C)
    return others_from_sums(flat, ids, sums, torch.bincount(ids, minlength=size)).view_as(hidden)  # (..., C)


def others_from_sums(flat: torch.Tensor, ids: torch.Tensor, sums: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """``mean_of_other_mentions`` of some tokens, flat (N, C) with group ids (N,), from the sums (G, C) and sizes
    (G,) of whole groups, which may hold tokens outside ``flat`` (inference sums a corpus, then goes batch by
    batch: the same numbers, without the corpus-sized temporaries)."""
    counts = sizes[ids]  # (N,) the size of each token's group
    context = sums[ids].sub_(flat).div_((counts - 1).clamp(min=1)[:, None])  # (N, C), in place: one temporary
    alone = (counts == 1) | (ids == 0)  # (N,)
    return context.masked_fill_(alone[:, None], 0.0)  # (N, C)
