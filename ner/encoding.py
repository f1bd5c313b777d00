"""Sentences turned into the tagger's ids once (words, characters, casing, tags, document mentions) and served
as padded batches: ``EncodedSentences`` and its ``TaggerBatch``es (``ner.model.Tagger.encode`` makes them).

Shape letters: B sentences, T tokens, C state features, N tokens of several batches, L + 1 biLM layers,
2P biLM features.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from ner.data.batching import Batch, Batcher
from ner.data.features import casing_class, document_ranges
from ner.elmo import ElmoCache
from ner.nn.mentions import others_from_sums


class EncodedSentences:
    """Sentences turned into ids once (words, characters, casing, tags); served as padded batches.

    ``elmo_cache`` (frozen ELMo only) holds the biLM layers of these sentences, in the same order. With
    ``has_document_casing`` the batcher's row features are the tokens' document casing classes;
    ``document_ids`` delimit the documents (see ``Tagger.encode``). With ``document_context`` batches hold
    whole documents and carry each token's mention group: its lowercased spelling within its document.
    """

    def __init__(
        self,
        batcher: Batcher,
        elmo_cache: ElmoCache | None = None,
        has_document_casing: bool = False,
        document_ids: Sequence[int] | None = None,
        document_context: bool = False,
    ) -> None:
        self.batcher = batcher
        self.document_ids = document_ids  # one per sentence; None: all one document
        self.has_document_casing = has_document_casing
        self.casing_table = torch.tensor([0] + [casing_class(word) for word in batcher.distinct])  # (rows,)
        self.elmo_cache = elmo_cache
        self.documents = document_ranges(len(batcher), document_ids) if document_context else None
        self.sentence_documents: torch.Tensor | None = None  # (sentences,) document number
        self.lowercase_table: torch.Tensor | None = None  # (rows,) id of each row's lowercased spelling, 0: padding
        if self.documents is not None:
            self.sentence_documents = torch.repeat_interleave(
                torch.arange(len(self.documents)), torch.tensor([len(d) for d in self.documents])
            )
            lowercase: dict[str, int] = {}
            self.lowercase_table = torch.tensor(
                [0] + [lowercase.setdefault(word.lower(), len(lowercase) + 1) for word in batcher.distinct]
            )

    def __len__(self) -> int:
        return len(self.batcher)

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        whole_documents: bool = True,
        select: Callable[[list[list[int]]], list[int]] | None = None,
        sentences: Sequence[int] | None = None,
        max_tokens: int | None = None,
    ) -> Iterator[TaggerBatch]:
        """Batches grouped by length; ``shuffle`` orders them by ``seed`` alone. With document context and
        ``whole_documents`` (training) they hold whole documents and carry their tokens' mention groups;
        without, they are grouped by length alone and ``other_mentions`` gathers the context across them.
        ``select``: this process's part of each batch (``Batcher.batches``). ``sentences``: only these (e.g. a
        group of ``document_groups``), and ``max_tokens`` padded tokens a batch, without ``whole_documents``."""
        documents = self.documents if whole_documents else None
        batches = self.batcher.batches(
            batch_size,
            shuffle=shuffle,
            seed=seed,
            documents=documents,
            select=select,
            sentences=sentences,
            max_tokens=max_tokens,
        )
        for batch in batches:
            casing = self.casing_table[batch.rows]  # (B, T), 0 on padding
            document_casing = self.batcher.row_features[batch.rows] if self.has_document_casing else None  # (B, T)
            layers = None
            if self.elmo_cache is not None:
                layers, _ = self.elmo_cache.layers_for(batch.indices)  # (L + 1, B, T + 2, 2P)
            groups = group_ids(self._mention_keys(batch)) if documents is not None else None  # (B, T)
            yield TaggerBatch(batch, casing, layers, document_casing, groups)

    def document_groups(self, max_tokens: int) -> list[list[int]]:
        """Sentence indices in groups of consecutive whole documents of up to ``max_tokens`` tokens each (a longer
        document alone), so that inference holds one group's states at a time. Documents are those of the
        document context, or else of ``document_ids`` (all one document without them)."""
        documents = self.documents or document_ranges(len(self), self.document_ids)
        lengths = self.batcher.lengths
        groups: list[list[int]] = []
        tokens = 0
        for document in documents:
            size = sum(lengths[i] for i in document)
            if groups and tokens + size <= max_tokens:
                groups[-1].extend(document)
                tokens += size
            else:
                groups.append(list(document))
                tokens = size
        return groups

    def other_mentions(self, batches: Sequence[Batch], states: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
        """For batches of these sentences (together holding every sentence of a document they touch) and their
        encoder states (B, T, C): the mean state of each token's other mentions in its document (B, T, C), one
        batch at a time (the group sums over every batch come first; no temporary is corpus-sized)."""
        keys = torch.cat([self._mention_keys(batch).reshape(-1) for batch in batches])  # (N,)
        groups = group_ids(keys.to(states[0].device))  # (N,)
        shared = torch.bincount(groups) > 1  # (G,) the groups of two mentions or more
        shared[0] = False
        groups = (shared.cumsum(0) * shared)[groups]  # (N,) only those keep an id: a lone token's context is 0
        sizes = torch.bincount(groups)  # (S,) S shared groups, and 0 (padding and lone tokens)
        sums = states[0].new_zeros(len(sizes), states[0].shape[-1])  # (S, C)
        parts = groups.split([hidden.shape[0] * hidden.shape[1] for hidden in states])  # each (B * T,)
        for ids, hidden in zip(parts, states):
            sums.index_add_(0, ids, hidden.reshape(-1, hidden.shape[-1]))  # in token order, as one call would
        for ids, hidden in zip(parts, states):
            yield others_from_sums(hidden.reshape(-1, hidden.shape[-1]), ids, sums, sizes).view_as(hidden)

    def _mention_keys(self, batch: Batch) -> torch.Tensor:
        """(B, T) one number per (document, lowercased spelling), the same in every batch; 0 on padding."""
        if self.lowercase_table is None or self.sentence_documents is None:
            raise ValueError("mention keys: the sentences were encoded for a model without document context")
        words = self.lowercase_table[batch.rows]  # (B, T), 0 on padding
        documents = self.sentence_documents[batch.indices]  # (B,)
        return (documents[:, None] * len(self.lowercase_table) + words) * batch.mask  # (B, T)


def group_ids(keys: torch.Tensor) -> torch.Tensor:
    """Ids from 1 shared by equal nonzero ``keys`` (any shape); 0 where the key is 0."""
    _, inverse = torch.unique(keys, return_inverse=True)
    return (inverse + 1) * (keys > 0)


@dataclass
class TaggerBatch:
    """A padded batch plus what only the tagger derives: casing classes and cached ELMo layers."""

    batch: Batch
    casing_ids: torch.Tensor  # (B, T) long
    elmo_layers: torch.Tensor | None  # (L + 1, B, T + 2, 2P) from the cache, or None
    document_casing_ids: torch.Tensor | None = None  # (B, T) long, when the model has the feature
    mention_groups: torch.Tensor | None = None  # (B, T) long, with model.document_context

    @property
    def size(self) -> int:
        return self.batch.mask.size(0)
