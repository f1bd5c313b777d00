"""ELMo character ids: every token becomes 50 ids built from its UTF-8 bytes (docs/elmo.md section 1).

A word is laid out as ``[<begin word>, byte_1 .. byte_k, <end word>, <padding char> ...]`` with at most
48 bytes, then **1 is added to every id** so that 0 is free for "no token": ids lie in 1..261, and a padded
token row (beyond a sentence's length) is all zeros. The sentence-boundary pseudo-tokens ``<S>`` and ``</S>``
use the special ids 256 and 257 in place of the bytes; the biLM adds them itself (``add_sentence_boundaries``).
"""

from __future__ import annotations

import torch

MAX_WORD_LENGTH = 50
BOS_CHAR = 256  # <bos sentence>
EOS_CHAR = 257  # <eos sentence>
BOW_CHAR = 258  # <begin word>
EOW_CHAR = 259  # <end word>
PAD_CHAR = 260  # <padding char>
NUM_CHAR_IDS = 262  # embedding rows: 0 (no token) + the 261 shifted ids
BOS_TOKEN = "<S>"
EOS_TOKEN = "</S>"


def _special_token_ids(char: int) -> list[int]:
    """The 50 shifted ids of a boundary pseudo-token whose only character is ``char``."""
    ids = [BOW_CHAR, char, EOW_CHAR] + [PAD_CHAR] * (MAX_WORD_LENGTH - 3)
    return [i + 1 for i in ids]


BOS_IDS = _special_token_ids(BOS_CHAR)
EOS_IDS = _special_token_ids(EOS_CHAR)


def word_to_char_ids(word: str) -> list[int]:
    """The 50 shifted character ids of one token; ``"<S>"`` and ``"</S>"`` map to the boundary ids."""
    if word == BOS_TOKEN:
        return list(BOS_IDS)
    if word == EOS_TOKEN:
        return list(EOS_IDS)
    data = word.encode("utf-8", "ignore")[: MAX_WORD_LENGTH - 2]
    ids = [BOW_CHAR, *data, EOW_CHAR] + [PAD_CHAR] * (MAX_WORD_LENGTH - 2 - len(data))
    return [i + 1 for i in ids]


def batch_to_char_ids(sentences: list[list[str]]) -> torch.Tensor:
    """Character ids of a batch of tokenised sentences, right-padded with all-zero token rows.

    Returns a ``(batch, max_len, 50)`` int64 tensor (``max_len`` is the longest sentence, at least 0).
    """
    max_len = max((len(tokens) for tokens in sentences), default=0)
    ids = torch.zeros(len(sentences), max_len, MAX_WORD_LENGTH, dtype=torch.long)  # (batch, time, 50)
    cache: dict[str, list[int]] = {}
    for row, tokens in enumerate(sentences):
        if tokens:
            word_ids = [cache[w] if w in cache else cache.setdefault(w, word_to_char_ids(w)) for w in tokens]
            ids[row, : len(tokens)] = torch.tensor(word_ids, dtype=torch.long)
    return ids


def add_sentence_boundaries(char_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Wrap each sentence of ``char_ids`` (batch, time, 50) in ``<S>`` ... ``</S>``.

    A sentence of length n (its count of non-zero token rows, which must be left-aligned) becomes
    n + 2 rows; an empty row becomes ``<S> </S>``. Returns the ``(batch, time + 2, 50)`` ids and the
    ``(batch, time + 2)`` bool mask of the wrapped sentences.
    """
    batch, time, width = char_ids.shape
    lengths = (char_ids > 0).any(-1).sum(-1)  # (batch,)
    wrapped = char_ids.new_zeros(batch, time + 2, width)  # (batch, time + 2, 50)
    wrapped[:, 1:-1] = char_ids
    rows = torch.arange(batch, device=char_ids.device)
    wrapped[:, 0] = torch.tensor(BOS_IDS, dtype=char_ids.dtype, device=char_ids.device)
    wrapped[rows, lengths + 1] = torch.tensor(EOS_IDS, dtype=char_ids.dtype, device=char_ids.device)
    mask = torch.arange(time + 2, device=char_ids.device) < (lengths + 2)[:, None]  # (batch, time + 2)
    return wrapped, mask


def batch_mask_with_boundaries(mask: torch.Tensor) -> torch.Tensor:
    """A (B, T) token mask -> the (B, T + 2) mask of the same sentences with <S> and </S> added."""
    lengths = mask.sum(dim=1, keepdim=True) + 2  # (B, 1)
    return torch.arange(mask.size(1) + 2, device=mask.device) < lengths  # (B, T + 2)


def remove_sentence_boundaries(tensor: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the ``<S>``/``</S>`` positions: ``tensor`` (batch, time + 2, dim) -> (batch, time, dim).

    ``mask`` (batch, time + 2) is the wrapped mask; a row of length j keeps positions ``1 .. j - 2``.
    Returns the stripped tensor (zero beyond each sentence) and its ``(batch, time)`` mask.
    """
    lengths = mask.sum(-1) - 2  # (batch,)
    time = tensor.size(1) - 2
    new_mask = torch.arange(time, device=mask.device) < lengths[:, None]  # (batch, time)
    stripped = tensor[:, 1:-1] * new_mask[..., None].to(tensor.dtype)  # (batch, time, dim)
    return stripped, new_mask
