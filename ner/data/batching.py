"""Turn sentences into padded tensor batches, grouped by length, in an order fixed by a seed.

Sentences are encoded into id tensors once (:class:`Batcher`); each epoch only sorts, slices and pads.
Shape letters: B sentences in the batch, T tokens in its longest sentence, W characters in its longest word
(at least ``min_word_length``, e.g. the widest filter of the character CNN).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.nn.utils.rnn import pad_sequence

from ner.data.vocab import Vocabulary


@dataclass
class Batch:
    """Padded ids of some sentences; padding is id 0 and ``mask`` False.

    ``indices`` are the positions of the batch's sentences in the list given to :class:`Batcher`, and
    ``tokens`` their tokens (for embedders that read strings, such as ELMo's character ids).
    """

    word_ids: torch.Tensor  # (B, T) long
    char_ids: torch.Tensor  # (B, T, W) long
    mask: torch.Tensor  # (B, T) bool, True on tokens, left-aligned
    tag_ids: torch.Tensor | None  # (B, T) long, or None for untagged sentences
    indices: list[int]
    tokens: list[list[str]]

    @property
    def lengths(self) -> torch.Tensor:
        """Tokens per sentence, (B,) long."""
        return self.mask.sum(dim=1)

    def to(self, device: torch.device | str) -> Batch:
        """The same batch with its tensors on ``device``."""
        return Batch(
            self.word_ids.to(device),
            self.char_ids.to(device),
            self.mask.to(device),
            None if self.tag_ids is None else self.tag_ids.to(device),
            self.indices,
            self.tokens,
        )


class Batcher:
    """Sentences encoded once as id tensors, served as padded batches.

    ``tag_seqs`` (optional) must use the tags of ``tags``; words longer than ``max_word_length`` characters
    (if set) keep only their first ``max_word_length`` characters.
    """

    def __init__(
        self,
        token_seqs: Sequence[Sequence[str]],
        words: Vocabulary,
        chars: Vocabulary,
        tag_seqs: Sequence[Sequence[str]] | None = None,
        tags: Vocabulary | None = None,
        *,
        min_word_length: int = 1,
        max_word_length: int | None = None,
    ) -> None:
        if (tag_seqs is None) != (tags is None):
            raise ValueError("give both tag_seqs and the tag vocabulary, or neither")
        if tag_seqs is not None and len(tag_seqs) != len(token_seqs):
            raise ValueError(f"expected tags for {len(token_seqs)} sentences, got {len(tag_seqs)}")
        self.tokens = [list(tokens) for tokens in token_seqs]
        self.min_word_length = min_word_length
        self.lengths = [len(tokens) for tokens in self.tokens]
        if 0 in self.lengths:
            raise ValueError(f"sentence {self.lengths.index(0)} is empty: every sentence needs a token")
        self.word_ids = [torch.tensor(words.encode(tokens)) for tokens in self.tokens]  # each (T_i,)
        spelled: dict[str, list[int]] = {}  # character ids of each distinct word
        for word in {word for tokens in self.tokens for word in tokens}:
            spelled[word] = chars.encode(word[:max_word_length])
        self.char_ids = [_pad_words([spelled[word] for word in tokens]) for tokens in self.tokens]  # each (T_i, W_i)
        self.tag_ids = None
        if tag_seqs is not None:
            for index, (tokens, tag_seq) in enumerate(zip(self.tokens, tag_seqs)):
                if len(tag_seq) != len(tokens):
                    raise ValueError(f"sentence {index}: {len(tokens)} tokens, {len(tag_seq)} tags")
            self.tag_ids = [torch.tensor(tags.encode(tag_seq)) for tag_seq in tag_seqs]  # each (T_i,)

    def __len__(self) -> int:
        return len(self.tokens)

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0) -> Iterator[Batch]:
        """Batches of up to ``batch_size`` sentences of similar length.

        Without ``shuffle`` sentences go shortest first (ties in input order). With ``shuffle`` sentences of
        equal length are ordered at random and the batches come in random order, both drawn from
        ``random.Random(seed)`` only, so a seed (e.g. base seed + epoch) fixes the whole epoch.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if shuffle:
            rng = random.Random(seed)
            tie_breaks = [rng.random() for _ in self.lengths]
            order = sorted(range(len(self)), key=lambda i: (self.lengths[i], tie_breaks[i]))
        else:
            order = sorted(range(len(self)), key=self.lengths.__getitem__)
        groups = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
        if shuffle:
            rng.shuffle(groups)
        for group in groups:
            yield self.batch(group)

    def batch(self, indices: Sequence[int]) -> Batch:
        """The padded batch of the sentences at ``indices``."""
        lengths = torch.tensor([self.lengths[i] for i in indices])  # (B,)
        max_length = int(lengths.max())
        word_ids = pad_sequence([self.word_ids[i] for i in indices], batch_first=True)  # (B, T)
        width = max(self.min_word_length, max(self.char_ids[i].shape[1] for i in indices))
        char_ids = torch.zeros(len(indices), max_length, width, dtype=torch.long)  # (B, T, W)
        for row, i in enumerate(indices):
            spelled = self.char_ids[i]  # (T_i, W_i)
            char_ids[row, : spelled.shape[0], : spelled.shape[1]] = spelled
        mask = torch.arange(max_length) < lengths.unsqueeze(1)  # (B, T)
        tag_ids = None
        if self.tag_ids is not None:
            tag_ids = pad_sequence([self.tag_ids[i] for i in indices], batch_first=True)  # (B, T)
        return Batch(word_ids, char_ids, mask, tag_ids, list(indices), [self.tokens[i] for i in indices])


def _pad_words(spellings: list[list[int]]) -> torch.Tensor:
    """Character ids of a sentence's words, right-padded with 0 to its longest word: (T_i, W_i) long."""
    width = max(len(ids) for ids in spellings)
    return torch.tensor([ids + [0] * (width - len(ids)) for ids in spellings], dtype=torch.long)
