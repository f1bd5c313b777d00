"""Numpy inputs of an exported tagger's graph (``ner export``): sentences -> batches of distinct-word ids.

A batch holds up to ``batch_size`` sentences of similar length (shortest first, as ``ner.data.batching``). Its graph
inputs describe the V distinct words of the batch once each (with the document casing feature: distinct (word,
class) pairs), and ``rows`` places them in the sentences:

- ``word_ids`` (V,): ids of ``WordLookup``/``Vocabulary.encode`` (lowercased if the vocabulary is; words of a
  pretrained table beyond the vocabulary get ``len(vocabulary) + row``); ``casing_ids`` (V,) ``casing_class``;
  ``document_casing_ids`` (V,) the ``documents_casing`` class; ``char_ids`` (V, W) the first ``max_word_length``
  characters' ids, 0-padded to at least the widest filter;
- ``rows`` (B, T): each token's distinct word, 0 at padding; ``lengths`` (B,): tokens per sentence.

With the document context, ``mention_groups`` gives each token an id shared by the tokens of the same lowercased
spelling in the same document (0 at padding), the groups that ``mean_of_other_mentions`` averages over.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ner.data.features import casing_class, document_ranges, documents_casing
from ner.data.vocab import Vocabulary, WordLookup


@dataclass
class EncodedBatch:
    """A batch's graph inputs (``feeds``), the positions of its sentences in the call, and their lengths."""

    indices: list[int]
    lengths: np.ndarray  # (B,) int64
    feeds: dict[str, np.ndarray]
    mention_groups: np.ndarray | None = None  # (B, T) int64, with the document context


@dataclass(frozen=True)
class Encoder:
    """What turns tokens into graph inputs: the lookups, and which optional inputs the graph takes."""

    words: Vocabulary | WordLookup
    chars: Vocabulary
    inputs: tuple[str, ...]  # the graph's input names (see the module docstring)
    max_word_length: int  # characters kept of a word
    min_width: int  # char_ids columns at least (the widest filter of the character CNN)
    document_context: bool

    def batches(
        self, sentences: Sequence[Sequence[str]], batch_size: int, document_ids: Sequence[int] | None = None
    ) -> Iterator[EncodedBatch]:
        """Batches of the (non-empty) ``sentences``; ``document_ids`` (one per sentence; None: one document)
        delimit the documents of the document casing feature and context."""
        if any(not tokens for tokens in sentences):
            raise ValueError("every sentence needs a token")
        features = documents_casing(sentences, document_ids) if "document_casing_ids" in self.inputs else None
        groups = self._mention_groups(sentences, document_ids) if self.document_context else None
        order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            yield self._batch(indices, sentences, features, groups)

    def _batch(
        self,
        indices: list[int],
        sentences: Sequence[Sequence[str]],
        features: list[list[int]] | None,
        groups: list[list[int]] | None,
    ) -> EncodedBatch:
        lengths = np.array([len(sentences[i]) for i in indices], dtype=np.int64)  # (B,)
        rows = np.zeros((len(indices), int(lengths.max())), dtype=np.int64)  # (B, T)
        position: dict[str | tuple[str, int], int] = {}  # distinct word (or (word, class)) -> row
        for b, i in enumerate(indices):
            keys = sentences[i] if features is None else zip(sentences[i], features[i])
            rows[b, : lengths[b]] = [position.setdefault(key, len(position)) for key in keys]
        distinct = list(position)
        words = distinct if features is None else [word for word, _ in distinct]
        feeds = {"word_ids": np.array(self.words.encode(words), dtype=np.int64), "rows": rows, "lengths": lengths}
        if "casing_ids" in self.inputs:
            feeds["casing_ids"] = np.array([casing_class(word) for word in words], dtype=np.int64)
        if features is not None:
            feeds["document_casing_ids"] = np.array([feature for _, feature in distinct], dtype=np.int64)
        if "char_ids" in self.inputs:
            spellings = [self.chars.encode(word[: self.max_word_length]) for word in words]
            char_ids = np.zeros((len(words), max(self.min_width, max(map(len, spellings)))), dtype=np.int64)
            for row, ids in enumerate(spellings):
                char_ids[row, : len(ids)] = ids
            feeds["char_ids"] = char_ids  # (V, W)
        mention_groups = None
        if groups is not None:
            mention_groups = np.zeros_like(rows)
            for b, i in enumerate(indices):
                mention_groups[b, : lengths[b]] = groups[i]
        return EncodedBatch(indices, lengths, feeds, mention_groups)

    @staticmethod
    def _mention_groups(sentences: Sequence[Sequence[str]], document_ids: Sequence[int] | None) -> list[list[int]]:
        """Per token, an id from 1 shared by the tokens of one lowercased spelling in one document."""
        ids: dict[tuple[int, str], int] = {}
        groups: list[list[int]] = []
        for number, document in enumerate(document_ranges(len(sentences), document_ids)):
            for i in document:
                groups.append([ids.setdefault((number, word.lower()), len(ids) + 1) for word in sentences[i]])
        return groups


def mean_of_other_mentions(states: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """The mean of ``states`` (N, C) over the other tokens of each token's group (N,) (ids, 0 = padding), zero for
    a token alone in its group and at padding: ``ner.nn.mentions.mean_of_other_mentions`` in numpy (float64 sums,
    float32 result). The groups' sums come from one sort and ``np.add.reduceat``."""
    context = np.zeros(states.shape, dtype=np.float32)
    tokens = np.flatnonzero(groups)  # (n,) not padding
    order = tokens[np.argsort(groups[tokens], kind="stable")]  # (n,) tokens sorted by group
    if len(order) == 0:
        return context
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])  # (G,) first token of each group
    counts = np.diff(np.r_[starts, len(order)])  # (G,)
    flat = states[order].astype(np.float64)  # (n, C)
    sums = np.add.reduceat(flat, starts, axis=0)  # (G, C)
    per_token = np.repeat(np.arange(len(starts)), counts)  # (n,) each sorted token's group number
    shared = counts[per_token] > 1  # (n,) tokens with another mention
    others = (sums[per_token] - flat) / np.maximum(counts[per_token] - 1, 1)[:, None]  # (n, C)
    context[order[shared]] = others[shared]
    return context
