"""Turn sentences into padded tensor batches, grouped by length, in an order fixed by a seed.

Sentences are encoded into id tensors once (:class:`Batcher`); each epoch only sorts, slices and pads.
Shape letters: B sentences in the batch, T tokens in its longest sentence, W characters in its longest word
(at least ``min_word_length``, e.g. the widest filter of the character CNN).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from ner.data.conll import paused_gc
from ner.data.vocab import Vocabulary, WordLookup


@dataclass
class Batch:
    """Padded ids of some sentences; padding is id 0 and ``mask`` False.

    ``indices`` are the positions of the batch's sentences in the list given to :class:`Batcher`, and
    ``tokens`` their tokens (for embedders that read strings, such as ELMo's character ids).
    """

    word_ids: torch.Tensor  # (B, T) long
    char_ids: torch.Tensor  # (B, T, W) long
    rows: torch.Tensor  # (B, T) long: each token's row in the Batcher's table of distinct words, 0 on padding
    mask: torch.Tensor  # (B, T) bool, True on tokens, left-aligned
    tag_ids: torch.Tensor | None  # (B, T) long, or None for untagged sentences
    indices: list[int]
    tokens: list[list[str]]

    @property
    def lengths(self) -> torch.Tensor:
        """Tokens per sentence, (B,) long."""
        return self.mask.sum(dim=1)


class Batcher:
    """Sentences encoded once as id tensors, served as padded batches.

    Each distinct word is looked up once: a table row holds its word id and its character ids, and a
    sentence is stored as the row numbers of its words (row 0 is padding), so a batch is two gathers. The
    sentences' rows (and tag ids) lie end to end in one tensor, ``starts[i]`` where sentence i begins: a view
    per sentence would cost ~600 bytes of tensor objects each (20 MB for CoNLL-2003's rows and tags).
    ``distinct[r - 1]`` is the word of row r, ``word_lengths[r]`` its number of character ids.
    With ``token_features`` (one small int per token, e.g. a document-level class) a row is a distinct
    (word, feature) pair instead: ``keys[r - 1]`` is that pair, ``row_features[r]`` the feature.
    ``tag_seqs`` (optional) must use the tags of ``tags``. Words longer than ``max_word_length`` characters
    (if set) keep their first ``max_word_length`` characters.
    """

    def __init__(
        self,
        token_seqs: Sequence[Sequence[str]],
        words: Vocabulary | WordLookup,
        chars: Vocabulary,
        tag_seqs: Sequence[Sequence[str]] | None = None,
        tags: Vocabulary | None = None,
        *,
        token_features: Sequence[Sequence[int]] | None = None,
        min_word_length: int = 1,
        max_word_length: int | None = None,
    ) -> None:
        if (tag_seqs is None) != (tags is None):
            raise ValueError("give both tag_seqs and the tag vocabulary, or neither")
        if tag_seqs is not None and len(tag_seqs) != len(token_seqs):
            raise ValueError(f"expected tags for {len(token_seqs)} sentences, got {len(tag_seqs)}")
        self.tokens = [list(tokens) for tokens in token_seqs]
        self.lengths = [len(tokens) for tokens in self.tokens]
        if 0 in self.lengths:
            raise ValueError(f"sentence {self.lengths.index(0)} is empty: every sentence needs a token")
        self.min_word_length = min_word_length
        if tag_seqs is not None:
            for index, (tokens, tag_seq) in enumerate(zip(self.tokens, tag_seqs)):
                if len(tag_seq) != len(tokens):
                    raise ValueError(f"sentence {index}: {len(tokens)} tokens, {len(tag_seq)} tags")

        if token_features is not None and [len(f) for f in token_features] != self.lengths:
            raise ValueError("token_features: expected one feature per token of every sentence")

        with paused_gc():
            row_of: dict[str | tuple[str, int], int] = {}  # distinct key -> table row, from 1
            if token_features is None:
                sentence_rows = [
                    [row_of.setdefault(word, len(row_of) + 1) for word in tokens] for tokens in self.tokens
                ]
            else:
                sentence_rows = [
                    [row_of.setdefault(key, len(row_of) + 1) for key in zip(tokens, features)]
                    for tokens, features in zip(self.tokens, token_features)
                ]
            self.keys: list[str | tuple[str, int]] = list(row_of)
            self.distinct: list[str] = self.keys if token_features is None else [word for word, _ in self.keys]
            self.row_features = torch.tensor(
                [0] + ([] if token_features is None else [f for _, f in self.keys]), dtype=torch.long
            )  # (rows,) or (1,) without features
            spellings = [[]] + [chars.encode(word[:max_word_length]) for word in self.distinct]
            spelled_lengths = [len(ids) for ids in spellings]
            width = max(max(spelled_lengths), 1)  # one column at least, even if every word is ""
            self.word_lengths = torch.tensor(spelled_lengths)  # (rows,)
            self.word_table = torch.tensor([0] + words.encode(self.distinct))  # (rows,)
            small = torch.int16 if len(chars) <= torch.iinfo(torch.int16).max else torch.int32  # 4x less than int64
            self.char_table = torch.tensor(
                [ids + [0] * (width - len(ids)) for ids in spellings], dtype=small
            )  # (rows, W_max); char_ids(rows) gives long ids
            self.length_table = torch.tensor(self.lengths)  # (sentences,)
            self.starts = torch.cumsum(self.length_table, 0) - self.length_table  # (sentences,)
            self.rows = _flat(sentence_rows)  # (tokens,)
            self.widths = [max(spelled_lengths[row] for row in rows) for rows in sentence_rows]
            self.tag_ids = None
            if tag_seqs is not None:
                self.tag_ids = _flat([tags.encode(tag_seq) for tag_seq in tag_seqs])  # (tokens,)

    def __len__(self) -> int:
        return len(self.tokens)

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        documents: Sequence[range] | None = None,
        select: Callable[[list[list[int]]], list[int]] | None = None,
        sentences: Sequence[int] | None = None,
        max_tokens: int | None = None,
    ) -> Iterator[Batch]:
        """Batches of up to ``batch_size`` sentences of similar length (of ``sentences`` alone, indices in input
        order, when given; not with ``documents``), and of up to ``max_tokens`` tokens once padded when given
        (a longer sentence alone; not with ``documents`` or ``shuffle``).

        Without ``shuffle`` sentences go shortest first (ties in input order). With ``shuffle`` sentences of
        equal length are ordered at random and the batches come in random order, both drawn from
        ``random.Random(seed)`` only, so a seed (e.g. base seed + epoch) fixes the whole epoch.

        With ``documents`` (sentence ranges that cover every sentence once) a batch holds whole documents
        instead: consecutive documents (in random order with ``shuffle``) up to ``batch_size`` sentences, a
        longer document alone.

        ``select`` (data-parallel training, ``ner.distributed.shard``) takes each batch's units, its sentences
        one by one or its whole documents, and returns the indices of the part this process computes.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if documents is not None:
            for units in _document_groups(documents, batch_size, random.Random(seed) if shuffle else None):
                yield self.batch(select(units) if select else [i for unit in units for i in unit])
            return
        if (sentences is not None or max_tokens is not None) and (documents is not None or shuffle):
            raise ValueError("batches: sentences and max_tokens go with neither documents nor shuffle")
        if shuffle:
            rng = random.Random(seed)
            tie_breaks = [rng.random() for _ in self.lengths]
            order = sorted(range(len(self)), key=lambda i: (self.lengths[i], tie_breaks[i]))
        else:
            order = sorted(range(len(self)) if sentences is None else sentences, key=self.lengths.__getitem__)
        if max_tokens is None:
            groups = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
        else:
            sorted_lengths = [self.lengths[i] for i in order]
            groups = [order[start:end] for start, end in length_chunks(sorted_lengths, batch_size, max_tokens)]
        if shuffle:
            rng.shuffle(groups)
        for group in groups:
            yield self.batch(select([[i] for i in group]) if select else group)

    def char_ids(self, rows: torch.Tensor, width: int) -> torch.Tensor:
        """The character ids (*rows.shape, width) long of the table ``rows``, cut or padded to ``width``."""
        table = self.char_table[:, :width]
        if width > table.shape[1]:
            table = torch.nn.functional.pad(table, (0, width - table.shape[1]))
        return table[rows].long()

    def sentence_rows(self, index: int) -> torch.Tensor:
        """The table rows of sentence ``index``'s words, (T_i,)."""
        start = int(self.starts[index])
        return self.rows[start : start + self.lengths[index]]

    def batch(self, indices: Sequence[int]) -> Batch:
        """The padded batch of the sentences at ``indices``."""
        chosen = torch.tensor(indices, dtype=torch.long)  # (B,)
        lengths = self.length_table[chosen]  # (B,)
        mask = torch.arange(int(lengths.max())) < lengths.unsqueeze(1)  # (B, T)
        positions = (self.starts[chosen].unsqueeze(1) + torch.arange(mask.shape[1])).masked_fill_(~mask, 0)  # (B, T)
        rows = self.rows[positions].masked_fill_(~mask, 0)  # (B, T), 0 on padding
        width = max(self.min_word_length, max(self.widths[i] for i in indices))  # may pass the longest word
        char_ids = self.char_ids(rows, width)  # (B, T, W)
        word_ids = self.word_table[rows]  # (B, T)
        tag_ids = None
        if self.tag_ids is not None:
            tag_ids = self.tag_ids[positions].masked_fill_(~mask, 0)  # (B, T)
        return Batch(word_ids, char_ids, rows, mask, tag_ids, list(indices), [self.tokens[i] for i in indices])


def _document_groups(documents: Sequence[range], batch_size: int, rng: random.Random | None) -> list[list[list[int]]]:
    """Batches of whole documents (each a list of its sentence indices), packed in order (shuffled by ``rng``)
    up to ``batch_size`` sentences each, a longer document alone."""
    order = list(documents)
    if rng is not None:
        rng.shuffle(order)
    groups: list[list[list[int]]] = []
    sizes: list[int] = []
    for document in order:
        if groups and sizes[-1] + len(document) <= batch_size:
            groups[-1].append(list(document))
            sizes[-1] += len(document)
        else:
            groups.append([list(document)])
            sizes.append(len(document))
    return groups


def _flat(id_lists: list[list[int]]) -> torch.Tensor:
    """The id lists end to end, (sum of lengths,) long."""
    return torch.tensor([i for ids in id_lists for i in ids], dtype=torch.long)


def length_chunks(lengths: Sequence[int], most_items: int, most_cells: int) -> Iterator[tuple[int, int]]:
    """``(start, end)`` slices of ``lengths`` (ascending), each of at most ``most_items`` items and, padded to its
    last (longest) item, ``most_cells`` cells (one item at least)."""
    start, count = 0, len(lengths)
    while start < count:
        end = start + 1
        while end < count and end - start < most_items and (end + 1 - start) * lengths[end] <= most_cells:
            end += 1
        yield start, end
        start = end
