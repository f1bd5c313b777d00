"""Character CNN token encoder (Kim et al. 2016; ELMo's ``_ElmoCharacterEncoder``).

Per token: embed its character ids ``(chars, char_dim)``; for each filter ``(width, num)`` a ``Conv1d``
without padding gives ``(num, chars - width + 1)``, its **max over time** then the activation gives ``num``
features; the filters are concatenated in order (``sum(num)`` features), passed through optional highway
layers (relu) and an optional linear projection. Character id 0 is padding: its embedding row is zero and
stays zero. Each token is read over its own characters (up to its last non-padding id), so its vector does not
depend on how far its batch is padded: by default padded with id 0 up to the widest filter when shorter, windows
past that left out of the max (ELMo's tokens fill all their 50 ids, so there every window counts, as in ELMo);
with ``boundary_windows`` every window that overlaps the token, padding of width - 1 on both sides included,
so filters also see where a word starts and ends (as the tagger's CNN in Ma & Hovy 2016).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ner.nn.highway import Highway

_ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh}


class CharCNN(nn.Module):
    """Character CNN over ``(..., chars)`` int64 ids -> ``(..., output_dim)`` token vectors.

    Args:
        num_chars: rows of the character embedding (id 0 = padding).
        char_dim: character embedding width.
        filters: ``(width, num_filters)`` pairs, in output order.
        activation: ``"relu"`` or ``"tanh"``, applied after the max over time.
        highway_layers: highway layers (relu) on the concatenated filter outputs.
        projection_dim: width of a final ``Linear`` (with bias, no activation); ``None`` for no projection.
        boundary_windows: also read the windows that overlap a token's start or end (see the module docstring).
    """

    def __init__(
        self,
        num_chars: int,
        char_dim: int,
        filters: Sequence[tuple[int, int]],
        activation: str = "relu",
        highway_layers: int = 0,
        projection_dim: int | None = None,
        boundary_windows: bool = False,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        if not filters or any(width < 1 or num < 1 for width, num in filters):
            raise ValueError(f"filters must be a non-empty list of positive (width, num) pairs, got {filters!r}")
        self.filters = [(int(width), int(num)) for width, num in filters]
        self.activation = activation
        self.max_width = max(width for width, _ in self.filters)
        self.num_filters = sum(num for _, num in self.filters)
        self.embedding = nn.Embedding(num_chars, char_dim, padding_idx=0)
        self.boundary_windows = boundary_windows
        self.convs = nn.ModuleList(
            nn.Conv1d(char_dim, num, kernel_size=width, padding=width - 1 if boundary_windows else 0)
            for width, num in self.filters
        )
        self.highway = Highway(self.num_filters, highway_layers) if highway_layers > 0 else None
        self.projection = nn.Linear(self.num_filters, projection_dim) if projection_dim else None
        self.output_dim = projection_dim or self.num_filters

    def forward(self, char_ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encode ``char_ids`` (..., chars); with ``mask`` (...) bool, only the tokens where it is true are
        computed and the others get exact zeros. Returns ``(..., output_dim)``."""
        leading = char_ids.shape[:-1]
        flat_ids = char_ids.reshape(-1, char_ids.size(-1))  # (tokens, chars)
        if mask is None:
            return self._encode_unique(flat_ids).reshape(*leading, self.output_dim)
        if mask.shape != leading:
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match char_ids shape {tuple(leading)}")
        flat_mask = mask.reshape(-1)  # (tokens,)
        encoded = self._encode_unique(flat_ids[flat_mask])  # (kept tokens, output_dim), bf16 under autocast
        out = encoded.new_zeros(flat_ids.size(0), self.output_dim)
        out[flat_mask] = encoded
        return out.reshape(*leading, self.output_dim)

    def _encode_unique(self, ids: torch.Tensor) -> torch.Tensor:
        """(tokens, chars) -> (tokens, output_dim), encoding each distinct word once (text repeats words a lot)."""
        unique, inverse = torch.unique(ids, dim=0, return_inverse=True)  # (types, chars), (tokens,)
        return self._encode(unique)[inverse]

    def _encode(self, ids: torch.Tensor) -> torch.Tensor:
        """(tokens, chars) -> (tokens, output_dim)."""
        if ids.size(1) < self.max_width and not self.boundary_windows:  # too short for the widest filter
            ids = F.pad(ids, (0, self.max_width - ids.size(1)))
        chars = self.embedding(ids).transpose(1, 2)  # (tokens, char_dim, chars)
        positions = torch.arange(ids.size(1) + self.max_width, device=ids.device)  # window indices
        # Characters each token is read over: up to its last non-padding id (at least the widest filter, or 1).
        read = ((ids != 0) * (positions[: ids.size(1)] + 1)).amax(dim=1)  # (tokens,)
        read = read.clamp(min=1 if self.boundary_windows else self.max_width)
        activation = _ACTIVATIONS[self.activation]
        inference = not torch.is_grad_enabled()  # in place, and amax (no indices; ties would share its gradient)
        features = []
        for (width, _), conv in zip(self.filters, self.convs):
            windows = conv(chars)  # (tokens, num, chars -/+ (width - 1)): window j starts at j (- (width - 1))
            inside = read + width - 1 if self.boundary_windows else read - width + 1  # (tokens,) windows to read
            outside = positions[: windows.size(-1)] >= inside[:, None]  # (tokens, windows) past the token
            if inference:
                features.append(activation(windows.masked_fill_(outside[:, None], -math.inf).amax(dim=-1)))
            else:
                features.append(activation(windows.masked_fill(outside[:, None], -math.inf).max(dim=-1).values))
        x = torch.cat(features, dim=-1)  # (tokens, num_filters)
        if self.highway is not None:
            x = self.highway(x)
        if self.projection is not None:
            x = self.projection(x)
        return x
